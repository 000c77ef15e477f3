"""The audit log read by a person (issue 14): every action code the code records has a label,
targets are named (a child by name, linked, only inside the reader's scope), details are a
sentence, the count is "N 件"; English appears only in the English UI."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

import mimamori
from mimamori.accounts.models import Role, User
from mimamori.audit import log as audit
from mimamori.audit.labels import ACTION_LABELS
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.registrants import registrant_target
from tests.cast import make_municipality, make_registrant, make_school, make_staff

BACKEND = "django.contrib.auth.backends.ModelBackend"
SOURCE = Path(mimamori.__file__).parent


def _literals(node: ast.expr) -> list[str] | None:
    """The strings an action argument can be: a literal, or a conditional between literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _literals(node.body), _literals(node.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def recorded_actions() -> set[str]:
    """Every action code passed to audit's record() anywhere in mimamori/. A code passed through
    a helper's parameter (``def _audit_change(..., action, ...)``) is followed to the helper's
    callers in the same module; anything the walk cannot resolve fails the test."""
    found: set[str] = set()
    unresolved: list[str] = []
    for path in SOURCE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or not call.args:
                continue
            name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if name != "record" or path.name == "log.py":
                continue
            if (codes := _literals(call.args[0])) is not None:
                found.update(codes)
                continue
            argument = call.args[0]
            helper = parents.get(call)
            while helper is not None and not isinstance(helper, ast.FunctionDef):
                helper = parents.get(helper)
            if not isinstance(argument, ast.Name) or helper is None:
                unresolved.append(f"{path}:{call.lineno}")
                continue
            position = [a.arg for a in helper.args.args].index(argument.id)
            callers = [
                c
                for c in ast.walk(tree)
                if isinstance(c, ast.Call) and getattr(c.func, "id", "") == helper.name
            ]
            assert helper.name in functions, f"{path}:{call.lineno}"
            assert callers, f"{path}:{call.lineno}"
            for caller in callers:
                given = caller.args[position] if len(caller.args) > position else None
                given = given or next((k.value for k in caller.keywords if k.arg == argument.id), None)
                codes = _literals(given) if given is not None else None
                if codes is None:
                    unresolved.append(f"{path}:{caller.lineno}")
                else:
                    found.update(codes)
    assert not unresolved, f"action codes the test cannot read: {unresolved}"
    return found


def test_every_recorded_action_has_a_label() -> None:
    actions = recorded_actions()
    # The walk finds the codes written literally, in a conditional and through a helper.
    assert {
        "broadcast.sent",
        "maintenance.moved",
        "maintenance.changed",
        "registrant.addresses_changed",
    } <= actions
    assert sorted(actions - set(ACTION_LABELS)) == []


def test_no_label_is_left_for_a_code_nobody_records() -> None:
    assert sorted(set(ACTION_LABELS) - recorded_actions()) == []


# --- the page ---------------------------------------------------------------------------------


def signed_in(user: User, language: str = "ja") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user, backend=BACKEND)
    return client


def rows(html: str) -> str:
    return html.split("<tbody>")[1].split("</tbody>")[0]


@pytest.mark.django_db
def test_the_log_reads_as_sentences_with_named_linked_targets() -> None:
    city = make_municipality(name="岩見沢市")
    school = make_school(city, name="緑小学校")
    child = make_registrant(school, ["a@docomo.ne.jp"], child_name="見守 花子")
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    staff.last_name = "市役所"
    staff.first_name = "花子"
    staff.save()
    teacher = make_staff(Role.SCHOOL, school=school)
    teacher.last_name, teacher.first_name = "学校", "一郎"
    teacher.save()
    broadcast = sending.compose(
        teacher, subject="不審者情報", body="注意してください。", scope=resolve_scope(teacher)
    )
    audit.record(
        "registrant.option_changed",
        actor=child.account,
        target=registrant_target(child),
        municipality=city,
        receive_broadcasts=False,
    )
    audit.record(
        "broadcast.sent",
        actor=teacher,
        target=f"broadcast {broadcast.pk}",
        subject="不審者情報",
        urgent=True,
    )
    audit.record("staff.password_reset", actor=staff, target=f"user {teacher.username}")
    audit.record("registrant.addresses_changed", actor=staff, target=registrant_target(child), slots=[1, 2])

    page = signed_in(staff).get(reverse("console:audit")).content.decode()
    body = rows(page)
    shown = AuditEvent.objects.filter(municipality=city).count()  # the four, and the login
    assert f'<p class="count">{shown} 件</p>' in page
    registrant_url = reverse("console:registrant", args=[child.pk])
    assert f'<a href="{registrant_url}">見守 花子（緑小学校）</a>' in body
    assert f'<a href="{reverse("console:broadcast", args=[broadcast.pk])}">不審者情報</a>' in body
    assert f'<a href="{reverse("console:staff")}">学校 一郎（{teacher.username}）</a>' in body
    assert "件名「不審者情報」（緊急）。" in body
    assert "連絡メールの受信をオフにしました。" in body
    assert "アドレス 1、2 を変更。" in body
    for label in ("連絡メール受信設定の変更", "一斉配信の送信", "職員パスワード再設定リンクの発行"):
        assert label in body
    # No codes, no JSON, no English.
    for raw in ("registrant.option_changed", "broadcast.sent", f"registrant {child.pk}", "{", "Broadcast"):
        assert raw not in body


@pytest.mark.django_db
def test_a_child_outside_the_reader_s_scope_is_not_named() -> None:
    city_a, city_b = make_municipality(name="岩見沢市"), make_municipality(name="滝川市")
    moved = make_registrant(make_school(city_b), [], child_name="転出 次郎")
    staff_a = make_staff(Role.MUNICIPALITY, municipality=city_a)
    # An event of city A about a child now at a school of city B (transferred away).
    audit.record("registrant.transferred_in", target=registrant_target(moved), municipality=city_a)
    body = rows(signed_in(staff_a).get(reverse("console:audit")).content.decode())
    assert "転出 次郎" not in body
    assert f"登録者（ログインID {moved.login_id}）" in body
    assert reverse("console:registrant", args=[moved.pk]) not in body


@pytest.mark.django_db
def test_an_erased_or_unknown_target_keeps_its_recorded_id() -> None:
    centre = make_staff(Role.CENTRE)
    audit.record("broadcast.sent", target="broadcast 999999", subject="古い配信", urgent=False)
    audit.record("login.failed", actor_name="no-such-user", target="user no-such-user", site="portal")
    body = rows(signed_in(centre).get(reverse("console:audit")).content.decode())
    assert "一斉配信 999999" in body
    assert "ログインID no-such-user" in body
    assert "保護者サイトから。" in body


@pytest.mark.django_db
def test_english_only_in_the_english_ui() -> None:
    city = make_municipality()
    child = make_registrant(make_school(city), [], child_name="見守 花子")
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    audit.record(
        "registrant.option_changed",
        target=registrant_target(child),
        municipality=city,
        receive_broadcasts=True,
    )
    english = signed_in(staff, "en").get(reverse("console:audit")).content.decode()
    count = AuditEvent.objects.filter(municipality=city).count()
    assert f'<p class="count">{count} entries</p>' in english
    assert "Broadcast option changed" in rows(english)
    assert "Broadcast mail turned on." in rows(english)
    japanese = signed_in(staff, "ja").get(reverse("console:audit")).content.decode()
    assert f'<p class="count">{count + 1} 件</p>' in japanese
    text = re.sub(r"<[^>]+>", "", rows(japanese)).replace(staff.username, "")
    for english_word in ("Broadcast", "turned", "Login", "Registrant", "option", "entries", "system"):
        assert english_word not in text
