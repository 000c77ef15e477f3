"""Issue 13, the input rule (mimamori/text.py) at every entry point but the API's schemas:
models, console and portal forms, the domain verbs, the roster import; mail that cannot be
built fails at once with its reason; CSV exports; a too-large form post."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest
from django import forms
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models
from django.test import Client
from django.urls import reverse

import mimamori.console
import mimamori.portal
from mimamori import text
from mimamori.accounts.models import Role, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import OPEN_STATUSES, Broadcast, Delivery, DeliveryStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.console.csv_export import csv_cell
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.registry import reachtests, recovery
from mimamori.registry.models import Registrant, School
from mimamori.registry.roster import import_roster
from mimamori.support.models import Inquiry
from mimamori.support.tasks import send_inquiry_copy
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks, run_until_quiet

pytestmark = pytest.mark.django_db

SINGLE_LINE_JA = "改行・タブ・目に見えない制御文字を含まない1行で入力してください。"
MULTI_LINE_JA = "使用できない文字（目に見えない制御文字）が含まれています。"
UNBUILDABLE_JA = "メールを作成できません"

# Text fields no user or integration sets: written by the code from values it made or checked
# (digests, tokens, SMTP replies, copies of checked addresses), or by operators' commands.
NOT_USER_TEXT = {
    # Hashes, tokens, keys: made by the code.
    "accounts.ApiToken.digest",
    "accounts.ApiToken.prefix",
    "registry.Registrant.registration_code_digest",
    "broadcasts.Delivery.confirmation_token",
    "mail.DkimKey.private_key",
    "mail.DkimKey.public_key",
    # The SHA-256 of the emblem's PNG, which registry/emblems.py encoded itself.
    "registry.MunicipalityEmblem.digest",
    # `mimamori dkim-keygen`: the municipality's checked mail domain, a selector made by the code.
    "mail.DkimKey.domain",
    "mail.DkimKey.selector",
    # Django's user: the username has UnicodeUsernameValidator (^[\w.@+-]+\Z), the password is
    # a hash; no page or command sets the names or e-mail.
    "accounts.User.username",
    "accounts.User.password",
    "accounts.User.first_name",
    "accounts.User.last_name",
    "accounts.User.email",
    # Audit rows: written by audit.record() from checked values; the login name of a failed
    # login was refused by the login form's rule before authenticate() ran.
    "audit.AuditEvent.actor_name",
    "audit.AuditEvent.action",
    "audit.AuditEvent.target",
    # The login name of a failed attempt (checked by the login forms, like actor_name above), and
    # the digests a password reset link is checked against.
    "accounts.ClientEvent.username",
    "accounts.PasswordReset.digest",
    "accounts.PasswordReset.password_fingerprint",
    # Copies of checked values, and what mail servers and the code said.
    "broadcasts.Delivery.email",
    "broadcasts.Delivery.reply",
    "broadcasts.AudienceGroup.class_name",
    "registry.AddressFailure.email",
    "registry.AddressFailure.status",
    "registry.AddressFailure.text",
    "registry.AddressFailure.source",
    "registry.ReachTestSlot.email",
    "mail.OutgoingMail.kind",
    "mail.OutgoingMail.target",
    "mail.OutgoingMail.to",
    "mail.OutgoingMail.envelope_domain",
    "mail.OutgoingMail.reply",
    "mail.CarrierProfile.last_trouble",
    # Carrier groups are made by a migration; staff edit their label (which has the rule).
    "mail.CarrierProfile.name",
    # The SHA-256 of a JMA document's bytes, made by quakes/ingest.py.
    "quakes.JmaDocument.digest",
    # The SHA-256 of a gate reader's token, made by gates/models.py.
    "gates.GateReader.token_digest",
}


def _project_text_fields() -> list[tuple[str, models.Field[Any, Any]]]:
    found: list[tuple[str, models.Field[Any, Any]]] = []
    for config in apps.get_app_configs():
        if not config.name.startswith("mimamori."):
            continue
        for model in config.get_models():
            for field in model._meta.get_fields():
                if isinstance(field, models.CharField | models.TextField) and field.concrete:
                    found.append((f"{config.label}.{model.__name__}.{field.name}", field))
    return found


def test_every_text_field_a_user_can_set_carries_the_input_rule() -> None:
    missing, needless = [], []
    for name, field in _project_text_fields():
        # A field with choices is checked against them: nothing else gets in.
        has_rule = any(isinstance(v, text.TextValidator) for v in field.validators) or bool(field.choices)
        if name in NOT_USER_TEXT:
            if has_rule:
                needless.append(name)
        elif not has_rule:
            missing.append(name)
    assert not missing, f"text fields without text.single_line or text.multi_line: {missing}"
    assert not needless, f"listed as not set by users but carry the rule: {needless}"


def test_bodies_and_messages_are_multi_line_and_names_single_line() -> None:
    rules = {name: field.validators for name, field in _project_text_fields()}
    for name in (
        "broadcasts.Broadcast.body",
        "maintenance.MaintenanceWindow.message",
        "support.Inquiry.body",
    ):
        assert text.multi_line in rules[name], name
    for name in ("broadcasts.Broadcast.subject", "registry.School.name", "registry.Municipality.name"):
        assert text.single_line in rules[name], name


def test_a_school_name_or_subject_with_a_line_break_is_refused_by_full_clean() -> None:
    school = make_school()
    school.name = "北小学校\r\nBcc: x@evil.example"
    with pytest.raises(ValidationError) as refused:
        school.full_clean()
    assert "name" in refused.value.message_dict
    municipality = make_municipality()
    municipality.mail_domain = "mail.example.jp\n"  # RegexValidator's $ lets this through
    with pytest.raises(ValidationError):
        municipality.full_clean()


# Fields of console and portal forms that are not text in the rule's sense.
NOT_TEXT_FORM_FIELDS = {
    # Passwords are hashed, never shown or mailed; Django already refuses a NUL in them.
    "password",
    "new_password1",
    "new_password2",
}


def _forms_of(package: Any) -> list[type[forms.BaseForm]]:
    found: dict[str, type[forms.BaseForm]] = {}
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, forms.BaseForm) and value.__module__.startswith("mimamori."):
                found[f"{value.__module__}.{value.__name__}"] = value
    return list(found.values())


def _fields(form_class: type[forms.BaseForm]) -> dict[str, forms.Field]:
    """The form's fields; an instance's where it can be made without arguments (fields added or
    changed in __init__)."""
    try:
        return dict(form_class().fields)
    except TypeError:
        return dict(form_class.base_fields)  # type: ignore[attr-defined]


def test_every_text_field_of_the_console_and_portal_forms_applies_the_rule() -> None:
    checked, missing = 0, []
    for form_class in _forms_of(mimamori.console) + _forms_of(mimamori.portal):
        model = getattr(getattr(form_class, "_meta", None), "model", None)
        for name, field in _fields(form_class).items():
            if not isinstance(field, forms.CharField) or name in NOT_TEXT_FORM_FIELDS:
                continue
            validators = list(field.validators)
            if model is not None and name in {f.name for f in model._meta.get_fields()}:
                validators += model._meta.get_field(name).validators  # run by the model form
            checked += 1
            if not any(isinstance(v, text.TextValidator) for v in validators):
                missing.append(f"{form_class.__module__}.{form_class.__name__}.{name}")
    assert checked > 25
    assert not missing, f"form fields without the input rule: {missing}"


def test_the_login_forms_apply_the_rule_to_the_login_id() -> None:
    from mimamori.console.forms import StaffAuthenticationForm
    from mimamori.portal.forms import GuardianLoginForm

    for form_class in (StaffAuthenticationForm, GuardianLoginForm):
        assert text.single_line in form_class().fields["username"].validators


def _signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


@pytest.mark.parametrize(
    "subject", ["不審者情報\r\nBcc: x@evil.example", "不審者\n情報", "件名\x00", "件\u2028名"]
)
def test_a_crafted_console_post_with_a_broken_subject_is_refused_in_japanese(subject: str) -> None:
    school = make_school()
    client = _signed_in(make_staff(Role.SCHOOL, school=school))
    response = client.post(reverse("console:broadcast_new"), {"subject": subject, "body": "本文です。"})
    assert response.status_code in (200, 400)
    assert response.context["form"].errors["subject"]  # a NUL gets Django's own message first
    assert not Broadcast.objects.exists()


def test_a_line_break_in_the_subject_is_refused_with_the_japanese_message() -> None:
    school = make_school()
    client = _signed_in(make_staff(Role.SCHOOL, school=school))
    response = client.post(
        reverse("console:broadcast_new"), {"subject": "不審者情報\r\nBcc: x@evil.example", "body": "本文"}
    )
    assert SINGLE_LINE_JA in response.content.decode()
    assert not Broadcast.objects.exists()


def test_the_body_keeps_its_line_breaks_and_tabs_but_not_other_control_characters() -> None:
    school = make_school()
    client = _signed_in(make_staff(Role.SCHOOL, school=school))
    url = reverse("console:broadcast_new")
    refused = client.post(url, {"subject": "件名", "body": "一行目\r\n\x1b[31m二行目"})
    assert MULTI_LINE_JA in refused.content.decode()
    assert not Broadcast.objects.exists()
    accepted = client.post(url, {"subject": "件名", "body": "一行目\r\n\t二行目"})
    assert accepted.status_code == 302
    assert Broadcast.objects.get().body == "一行目\r\n\t二行目"


def test_the_compose_verb_refuses_what_the_form_would_for_every_caller() -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    scope = resolve_scope(staff, school_ids=[school.pk])
    with pytest.raises(ValidationError) as refused:
        sending.compose(staff, subject="件名\r\nBcc: x@evil.example", body="本文\x00", scope=scope)
    assert set(refused.value.message_dict) == {"subject", "body"}
    assert not Broadcast.objects.exists()


def test_scope_values_the_rule_refuses_never_reach_the_database() -> None:
    staff = make_staff(Role.CENTRE)
    with pytest.raises(ValidationError) as refused:
        resolve_scope(staff, municipality_codes=["city\x00"], school_ids=[2**63], classes=["1\r\n2"])
    assert set(refused.value.message_dict) == {"municipalities", "schools", "classes"}


def test_an_anonymous_inquiry_with_a_line_break_in_its_subject_is_refused() -> None:
    city = make_municipality(support_email="desk@example.jp")
    response = Client().post(
        reverse("portal:inquiry"),
        {
            "municipality": city.pk,
            "name": "佐藤 花子",
            "reply_to": "hanako@docomo.ne.jp",
            "subject": "質問\r\nBcc: x@evil.example",
            "body": "本文です。",
        },
    )
    assert response.status_code == 200
    assert SINGLE_LINE_JA in response.content.decode()
    assert not Inquiry.objects.exists()


def test_an_inquiry_stored_before_the_rule_fails_its_copy_visibly_instead_of_the_task() -> None:
    city = make_municipality(support_email="desk@example.jp")
    inquiry = Inquiry.objects.create(
        municipality=city, name="佐藤", reply_to="hanako@docomo.ne.jp", subject="質問", body="本文"
    )
    # As a row written before the rule (or by hand): a line break in a name that goes into From.
    type(city).objects.filter(pk=city.pk).update(support_name="窓口\r\nBcc: x@evil.example")

    assert send_inquiry_copy.call(inquiry.pk) is True  # the task itself completes
    mail = OutgoingMail.objects.get(kind="inquiry_copy")
    assert mail.status == OutgoingStatus.FAILED
    assert UNBUILDABLE_JA in mail.reply
    assert mail.to == "desk@example.jp"
    inquiry.refresh_from_db()
    assert inquiry.copied_at is not None  # not tried again and again


NUL = "\x00"


def _nul_posts(school: School, registrant: Registrant) -> list[tuple[str, str, dict[str, Any]]]:
    """(who, url, form) for forms of every kind, each posting NUL in its fields."""
    city = school.municipality
    return [
        ("school", reverse("console:broadcast_new"), {"subject": NUL, "body": NUL, "classes": NUL}),
        ("centre", reverse("console:broadcast_new"), {"subject": "a", "body": "b", "municipalities": [NUL]}),
        ("school", reverse("console:broadcast_new"), {"subject": "a", "body": "b", "schools": [NUL]}),
        (
            "centre",
            reverse("console:municipality_settings", args=[city.code]),
            {
                "mail_domain": NUL,
                "support_name": NUL,
                "support_phone": NUL,
                "support_email": f"desk{NUL}@example.jp",
                "support_hours": NUL,
                "broadcast_slots": ["1"],
                "maintenance_notice_lead_hours": "72",
                "reach_test_interval_days": "0",
            },
        ),
        (
            "centre",
            reverse("console:maintenance_new"),
            {
                "starts_at": "2099-01-01T10:00",
                "ends_at": "2099-01-01T11:00",
                "message": NUL,
                "municipalities": [NUL],
            },
        ),
        (
            "centre",
            reverse("console:carrier_profile", args=["default"]),
            {
                "label": NUL,
                "domains": NUL,
                "sessions": "8",
                "mails_per_session": "100",
                "rate_per_minute": "0",
                "charset": "utf-8",
            },
        ),
        (
            "school",
            reverse("console:school_transfer_in", args=[school.pk]),
            {"child_name": NUL, "child_name_kana": NUL, "grade": "3", "class_name": NUL},
        ),
        (
            "school",
            reverse("console:registrant_deregistration", args=[registrant.pk]),
            {"reason": "other", "effective_on": "2099-01-01", "note": NUL},
        ),
        (
            "guardian",
            reverse("portal:addresses"),
            {f"address{slot}": f"a{NUL}@example.jp" for slot in (1, 2, 3, 4)},
        ),
        (
            "guardian",
            reverse("portal:deregistration"),
            {"reason": "other", "effective_on": "2099-01-01", "note": NUL},
        ),
        (
            "anonymous",
            reverse("portal:inquiry"),
            {"municipality": NUL, "name": NUL, "subject": NUL, "body": NUL},
        ),
        (
            "anonymous",
            reverse("portal:inquiry"),
            {
                "municipality": city.pk,
                "name": "a",
                "reply_to": f"a{NUL}@example.jp",
                "subject": "b",
                "body": "c",
            },
        ),
        ("anonymous", reverse("portal:login"), {"username": NUL, "password": NUL}),
        ("anonymous", reverse("portal:first_login"), {"username": NUL, "code": NUL, "new_password1": NUL}),
        ("anonymous", reverse("console:login"), {"username": NUL, "password": NUL}),
    ]


def test_a_nul_in_any_field_is_a_form_error_not_a_server_error() -> None:
    """On PostgreSQL a NUL that reached a query or an INSERT was a 500."""
    school = make_school()
    registrant = make_registrant(school, ["family@docomo.ne.jp"])
    clients = {
        "school": _signed_in(make_staff(Role.SCHOOL, school=school)),
        "centre": _signed_in(make_staff(Role.CENTRE)),
        "guardian": _signed_in(registrant.account),
        "anonymous": Client(),
    }
    before = {model: model.objects.count() for model in (Broadcast, Inquiry, Registrant)}
    for who, url, data in _nul_posts(school, registrant):
        response = clients[who].post(url, data)
        assert response.status_code in (200, 400), (url, data, response.status_code)
    assert before == {model: model.objects.count() for model in (Broadcast, Inquiry, Registrant)}
    assert not registrant.deregistration_requests.exists()


@pytest.mark.parametrize(
    "query",
    [{"q": NUL}, {"class_name": NUL}, {"school": str(2**64)}, {"grade": NUL}],
)
def test_list_filters_with_refused_values_are_ignored_not_server_errors(query: dict[str, str]) -> None:
    client = _signed_in(make_staff(Role.CENTRE))
    assert client.get(reverse("console:registrants"), query).status_code == 200
    assert client.get(reverse("console:audit"), {"actor": NUL, "target": NUL}).status_code == 200
    assert client.get(reverse("console:schools"), {"q": NUL}).status_code == 200
    # A lone surrogate cannot be sent as UTF-8; its bytes in the URL are decoded with replacement.
    assert client.get(reverse("console:registrants") + "?q=%ED%A0%80").status_code == 200


# The roster import -----------------------------------------------------------------------

HEADER = "学年,組,児童氏名,ふりがな,メールアドレス1\r\n"


def _import(school: School, data: bytes) -> Any:
    import io

    return import_roster(school, data, letters=io.StringIO())


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("3,1,見守\x00花子,みまもり,a@docomo.ne.jp", "児童氏名"),
        ('3,1,"見守\r\n花子",みまもり,a@docomo.ne.jp', "児童氏名"),
        ('3,"1\n",見守 花子,みまもり,a@docomo.ne.jp', "組"),
        ("3,1,見守 花子,みまもり\x1b,a@docomo.ne.jp", "ふりがな"),
        ("3,1,見守 花子,みまもり,a\x00@docomo.ne.jp", "メールアドレス1"),
        ("3,1," + "長" * 65 + ",みまもり,a@docomo.ne.jp", "児童氏名"),
    ],
)
def test_a_roster_cell_the_rule_refuses_is_reported_with_its_line_and_column(row: str, column: str) -> None:
    school = make_school()
    data = (HEADER + "3,2,岩見沢 一郎,いわみざわ,ichiro@ezweb.ne.jp\r\n" + row + "\r\n").encode()
    result = _import(school, data)
    assert not result.ok
    assert [(e.line, e.column) for e in result.errors] == [(3, column)]
    assert not Registrant.objects.filter(school=school).exists()


def test_a_roster_with_a_lone_surrogate_is_refused_and_nothing_is_imported() -> None:
    school = make_school()
    data = (
        HEADER + "3,1,見守 花子,みまもり,a@docomo.ne.jp\r\n"
    ).encode() + "3,2,\ud800,x,b@docomo.ne.jp\r\n".encode("utf-8", "surrogatepass")
    result = _import(school, data)
    assert not result.ok
    assert not Registrant.objects.filter(school=school).exists()


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 4,  # .xlsx
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512),  # .xls
        HEADER.encode("utf-16"),  # Excel's "Unicode text"
        bytes(range(256)) * 8,
    ],
)
def test_a_file_that_is_not_csv_text_gets_a_clear_error(data: bytes) -> None:
    school = make_school()
    result = _import(school, data)
    assert [e.line for e in result.errors] == [0]
    assert "CSV形式のテキストファイルではありません" in result.errors[0].message
    assert not Registrant.objects.filter(school=school).exists()


def test_the_console_upload_reports_a_nul_cell_on_its_line() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    school = make_school()
    client = _signed_in(make_staff(Role.SCHOOL, school=school))
    data = (HEADER + "3,1,見守\x00花子,みまもり,a@docomo.ne.jp\r\n").encode()
    response = client.post(
        reverse("console:roster_upload", args=[school.pk]), {"file": SimpleUploadedFile("r.csv", data)}
    )
    assert response.status_code == 400
    assert SINGLE_LINE_JA in response.content.decode()
    assert not Registrant.objects.filter(school=school).exists()


# Mail that cannot be built ---------------------------------------------------------------


def test_a_school_name_with_a_line_break_fails_its_mails_at_once_others_arrive(
    smtp_sink: Sink,
) -> None:
    city = make_municipality()
    good, bad = make_school(city, name="北小学校"), make_school(city, name="南小学校")
    make_registrant(good, ["north@docomo.ne.jp"])
    make_registrant(bad, ["south1@docomo.ne.jp"])
    make_registrant(bad, ["south2@ezweb.ne.jp"])
    # Stored before the rule, or written past it: the model's validators never ran.
    School.objects.filter(pk=bad.pk).update(name="南小学校\r\nBcc: x@evil.example")
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    broadcast = sending.compose(
        staff,
        subject="不審者情報",
        body="下校時に注意",
        scope=resolve_scope(staff, municipality_codes=[city.code]),
    )
    assert sending.send(broadcast)
    run_until_quiet()

    assert set(smtp_sink.copies()) == {"north@docomo.ne.jp"}
    rows = {d.email: d for d in Delivery.objects.filter(broadcast=broadcast)}
    assert rows["north@docomo.ne.jp"].status == DeliveryStatus.ACCEPTED
    for address in ("south1@docomo.ne.jp", "south2@ezweb.ne.jp"):
        row = rows[address]
        assert row.status == DeliveryStatus.FAILED  # at once: not deferred for an hour
        assert row.attempts == 1
        assert UNBUILDABLE_JA in row.reply
    assert not Delivery.objects.filter(broadcast=broadcast, status__in=OPEN_STATUSES).exists()
    broadcast.refresh_from_db()
    assert broadcast.status == "sent"
    # Staff read the reason on the broadcast's page.
    page = _signed_in(staff).get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert UNBUILDABLE_JA in page
    assert "x@evil.example" not in smtp_sink.copies()


def test_a_reach_test_of_a_school_with_a_broken_name_fails_its_mails_with_the_reason(smtp_sink: Sink) -> None:
    school = make_school(name="北小学校")
    make_registrant(school, ["one@docomo.ne.jp", "two@ezweb.ne.jp"])
    School.objects.filter(pk=school.pk).update(name="北小学校\nBcc: x@evil.example")
    school.refresh_from_db()
    staff = make_staff(Role.SCHOOL, school=school)
    page = _signed_in(staff).get(reverse("console:reach_test_new", args=[school.pk]))
    assert page.status_code == 200  # the sample mail is left out, not a server error

    test = reachtests.start(school, by=staff)
    run_queued_tasks()
    mails = OutgoingMail.objects.filter(target=test.target)
    assert mails.count() == 2
    assert set(mails.values_list("status", flat=True)) == {OutgoingStatus.FAILED}
    assert all(UNBUILDABLE_JA in mail.reply for mail in mails)
    assert not smtp_sink.copies()


def test_a_reset_mail_from_a_school_with_a_broken_name_fails_with_the_reason(smtp_sink: Sink) -> None:
    school = make_school(name="北小学校")
    registrant = make_registrant(school, ["one@docomo.ne.jp"])
    School.objects.filter(pk=school.pk).update(name="北小学校\r\nBcc: x@evil.example")
    assert recovery.request_password_reset(registrant.login_id, "one@docomo.ne.jp")
    run_queued_tasks()
    mail = OutgoingMail.objects.get(kind="password_reset")
    assert mail.status == OutgoingStatus.FAILED
    assert UNBUILDABLE_JA in mail.reply
    assert not smtp_sink.copies()


# CSV exports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        "+1",
        "-1",
        "@SUM(A1)",
        "\t=1",
        "＝1+1",
        "＋1",
        "－1",
        "＠SUM(A1)",
        "−1",
        " =1",
        ";=1+1",
        "a;=1+1",
        "a,=1",
        "a;＝1",
        "x\t+1",
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(value: str) -> None:
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize(
    "value",
    ["見守 花子", "hanako.mama@docomo.ne.jp", "3", "北小学校", "1-2組", "a=b", "", "岩見沢市、滝川市"],
)
def test_ordinary_csv_cells_are_left_as_they_are(value: str) -> None:
    assert csv_cell(value) == value


def test_the_undeliverable_export_quotes_and_neutralises_a_hostile_name() -> None:
    import csv
    import io

    from mimamori.registry.models import Address, AddressStatus

    school = make_school()
    registrant = make_registrant(school, ["gone@docomo.ne.jp"], child_name="＝HYPERLINK(1)")
    Registrant.objects.filter(pk=registrant.pk).update(child_name_kana=";=1+1")
    Address.objects.filter(registrant=registrant).update(status=AddressStatus.SUPPRESSED)
    client = _signed_in(make_staff(Role.SCHOOL, school=school))
    response: Any = client.get(reverse("console:undeliverable_csv", args=[school.pk]))
    raw = b"".join(response.streaming_content).decode()
    assert '"\'＝HYPERLINK(1)"' in raw
    assert '"\';=1+1"' in raw
    rows = list(csv.reader(io.StringIO(raw.removeprefix("\ufeff"), newline="")))
    assert rows[1][2:4] == ["'＝HYPERLINK(1)", "';=1+1"]


# A form post too large --------------------------------------------------------------------


def test_a_too_large_form_post_answers_413_in_japanese(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    school = make_school()
    client = _signed_in(make_staff(Role.SCHOOL, school=school))
    response = client.post(reverse("console:broadcast_new"), {"subject": "件名", "body": "あ" * 20_000})
    assert response.status_code == 413
    assert "送信された内容が大きすぎます" in response.content.decode()
    assert not Broadcast.objects.exists()
    portal = Client().post(reverse("portal:login"), {"username": "1", "password": "x" * 20_000})
    assert portal.status_code == 413


def test_too_many_fields_answer_413_too(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    response = Client().post(reverse("portal:login"), {f"f{n}": "x" for n in range(50)})
    assert response.status_code == 413


def test_the_api_is_left_to_answer_a_too_large_body_itself(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = Client().post(
        "/api/v1/broadcasts", {"subject": "x" * 20_000}, HTTP_AUTHORIZATION="Bearer mmr_not-a-token"
    )
    assert "送信された内容が大きすぎます" not in response.content.decode()


def test_every_answer_reads_what_was_left_of_the_body_first(settings: Any) -> None:
    # Behind nginx, a body left unread when the connection closes turns the answer into a 502.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    form = Client().post(reverse("portal:login"), {"username": "1", "password": "x" * 20_000})
    # The API refuses a post without a token before it reads the body.
    no_token = Client().post(
        "/api/v1/broadcasts", b'{"body": "' + b"x" * 5_000 + b'"}', content_type="application/json"
    )
    for response, status in ((form, 413), (no_token, 401)):
        assert response.status_code == status
        assert len(response.wsgi_request.environ["wsgi.input"]) == 0  # nothing left unread


def test_a_small_post_still_reaches_the_page(settings: Any) -> None:
    response = Client().post(reverse("portal:login"), {"username": "1", "password": "x"})
    assert response.status_code == 200
    assert response.context["form"].errors  # the login page itself answered
