"""Roster import (P8): encodings, headers, the all-or-nothing error report, CLI, console, letters."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from io import StringIO
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from mimamori.accounts.models import Role, User
from mimamori.registry import letters as letters_module
from mimamori.registry import registrants as registrants_module
from mimamori.registry import roster as roster_module
from mimamori.registry.letters import letters_html
from mimamori.registry.models import Address, Registrant, School
from mimamori.registry.registrants import Enrolment, deregister, enrol
from mimamori.registry.roster import RosterImport, create_registrants, import_roster, read_roster
from tests.cast import make_registrant, make_school, make_staff

pytestmark = pytest.mark.django_db(transaction=False)

JAPANESE = (
    "学年,組,児童氏名,ふりがな,メールアドレス1,メールアドレス2,メールアドレス3,メールアドレス4,連絡メール\r\n"
    "３,1組,見守 花子,みまもり はなこ,hanako.mama@docomo.ne.jp,papa@example.jp,,,1\r\n"
    "3年,2,岩見沢 一郎,いわみざわ いちろう,ichiro@ezweb.ne.jp,,grandma@example.jp,,しない\r\n"
    ",,,,,,,,\r\n"
)
ENGLISH = (
    "grade,class,child_name,child_name_kana,address1,address2,address3,address4,receive_broadcasts\n"
    "3,1,見守 花子,みまもり はなこ,hanako.mama@docomo.ne.jp,papa@example.jp,,,true\n"
    "3,2,岩見沢 一郎,いわみざわ いちろう,ichiro@ezweb.ne.jp,,grandma@example.jp,,0\n"
)
BAD = (
    "学年,組,児童氏名,メールアドレス1\n"
    "3,1,見守 花子,hanako@docomo.ne.jp\n"
    "3,1,滝川 次郎,a..b@docomo.ne.jp\n"
    "0,2,夕張 三郎,\n"
    "4,2,,ok@example.jp\n"
)


def _counts() -> tuple[int, int]:
    return Registrant.objects.count(), User.objects.count()


def _import(school: School, data: bytes, *progress: Any) -> tuple[RosterImport, str]:
    """The import's result and the letters it wrote."""
    letters = StringIO()
    roster = import_roster(school, data, *progress, letters=letters)
    return roster, letters.getvalue()


def _codes(html: str) -> dict[str, str]:
    """Login ID -> registration code, as the letters print them."""
    return dict(re.findall(r"<td class=\"code\">(\d{8})</td>.*?class=\"code\">([A-Z0-9-]+)<", html, re.S))


def _assert_imported(school: School) -> None:
    hanako = Registrant.objects.get(school=school, child_name="見守 花子")
    assert (hanako.grade, hanako.class_name, hanako.child_name_kana) == (3, "1", "みまもり はなこ")
    assert hanako.addresses_by_slot() == {1: "hanako.mama@docomo.ne.jp", 2: "papa@example.jp", 3: "", 4: ""}
    assert hanako.receive_broadcasts is True
    ichiro = Registrant.objects.get(school=school, child_name="岩見沢 一郎")
    assert (ichiro.grade, ichiro.class_name) == (3, "2")
    assert ichiro.addresses_by_slot() == {1: "ichiro@ezweb.ne.jp", 2: "", 3: "grandma@example.jp", 4: ""}
    assert ichiro.receive_broadcasts is False
    assert Registrant.objects.filter(school=school).count() == 2


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(JAPANESE.encode("utf-8"), id="utf-8"),
        pytest.param(b"\xef\xbb\xbf" + JAPANESE.encode("utf-8"), id="utf-8-bom"),
        pytest.param(JAPANESE.encode("cp932"), id="cp932"),
        pytest.param(ENGLISH.encode("utf-8"), id="english"),
    ],
)
def test_roster_imports_every_encoding_and_header_language(data: bytes) -> None:
    school = make_school()
    roster, letters = _import(school, data)
    assert roster.ok, roster.errors
    assert roster.created == 2
    _assert_imported(school)
    codes = _codes(letters)
    assert len(codes) == 2
    for registrant in Registrant.objects.filter(school=school):
        assert registrant.registration_code_matches(codes[registrant.login_id])
        assert not registrant.account.has_usable_password()


def test_bad_lines_are_each_reported_and_nothing_is_created() -> None:
    school = make_school()
    before = _counts()
    roster, _letters = _import(school, BAD.encode("cp932"))
    assert _counts() == before
    assert roster.created == 0
    report = {(e.line, e.column): e.message for e in roster.errors}
    assert set(report) == {(3, "メールアドレス1"), (4, "学年"), (5, "児童氏名")}
    assert "2つ続いて" in report[(3, "メールアドレス1")] or ".." in report[(3, "メールアドレス1")]
    assert "1から9" in report[(4, "学年")]
    assert "児童氏名を入力" in report[(5, "児童氏名")]


def test_missing_column_duplicates_and_undecodable_files_are_refused() -> None:
    school = make_school()
    make_registrant(school, child_name="既存 太郎", grade=2, class_name="1")
    before = _counts()
    missing, _letters = _import(school, "学年,児童氏名\n3,見守 花子\n".encode())
    assert [(e.line, e.column) for e in missing.errors] == [(1, "組")]
    duplicate, _letters = _import(
        school, "学年,組,児童氏名\n3,1,見守 花子\n3,1組,見守 花子\n2,1,既存 太郎\n".encode()
    )
    assert [(e.line, e.column) for e in duplicate.errors] == [(3, "児童氏名"), (4, "児童氏名")]
    assert "2行目" in duplicate.errors[0].message
    assert "既にこの学校に登録" in duplicate.errors[1].message
    garbage, _letters = _import(school, b"\x82\xa0\n\x85\x40\n")
    assert garbage.errors[0].line == 2
    assert "文字コード" in garbage.errors[0].message
    assert _counts() == before


def test_a_thousand_line_roster_imports_within_seconds() -> None:
    school = make_school()
    lines = ["学年,組,児童氏名,メールアドレス1,メールアドレス2"]
    lines += [f"{i % 6 + 1},{i % 4 + 1},児童 {i},p{i}@docomo.ne.jp,q{i}@example.jp" for i in range(1000)]
    started = time.perf_counter()
    seen: list[tuple[int, int]] = []
    roster, _letters = _import(
        school, "\n".join(lines).encode(), lambda done, total: seen.append((done, total))
    )
    elapsed = time.perf_counter() - started
    assert roster.ok, roster.errors[:3]
    assert Registrant.objects.filter(school=school).count() == 1000
    assert seen[-1] == (1000, 1000)
    print(f"1,000-line roster imported in {elapsed:.2f}s")
    assert elapsed < 20


def test_letters_carry_login_id_and_a_code_that_works_for_first_login() -> None:
    school = make_school()
    _roster, html = _import(school, JAPANESE.encode())
    assert html.count('class="letter"') == 2
    assert "/portal/first-login/" in html
    assert school.municipality.mail_domain in html
    for phrase in ("ドメイン指定受信", "登録完了メール", "アドレス1", "サポート窓口"):
        assert phrase in html
    assert school.municipality.support_phone in html
    for registrant in Registrant.objects.filter(school=school):
        assert registrant.login_id in html
        codes = re.findall(rf"{registrant.login_id}</td>.*?class=\"code\">([A-Z0-9-]+)<", html, re.S)
        assert len(codes) == 1
        assert registrant.registration_code_matches(codes[0])


def test_cli_call_command_reports_errors_and_creates_nothing(tmp_path: Path) -> None:
    school = make_school()
    roster = tmp_path / "roster.csv"
    roster.write_bytes(BAD.encode("cp932"))
    before = _counts()
    stderr = StringIO()
    with pytest.raises(CommandError, match="3件のエラー"):
        call_command("import_roster", str(roster), school=school.pk, stderr=stderr)
    assert _counts() == before
    report = stderr.getvalue()
    assert "3行目 [メールアドレス1]" in report
    assert "4行目 [学年]" in report
    assert "5行目 [児童氏名]" in report
    assert not (tmp_path / "roster-letters.html").exists()


def test_cli_call_command_imports_and_writes_letters(tmp_path: Path) -> None:
    school = make_school()
    roster = tmp_path / "roster.csv"
    roster.write_bytes(JAPANESE.encode("cp932"))
    stdout, stderr = StringIO(), StringIO()
    call_command("import_roster", str(roster), school=school.pk, stdout=stdout, stderr=stderr)
    _assert_imported(school)
    letters = tmp_path / "roster-letters.html"
    assert "2件" in stdout.getvalue()
    assert str(letters) in stdout.getvalue()
    assert "100%" in stderr.getvalue()
    html = letters.read_text(encoding="utf-8")
    for registrant in Registrant.objects.filter(school=school):
        assert registrant.login_id in html
    assert oct(letters.stat().st_mode & 0o777) == "0o600"


@contextmanager
def _database_for_subprocess(tmp_path: Path) -> Iterator[str]:
    """A DATABASE_URL through which a child process sees (and changes) this test's data."""
    database = connection.settings_dict
    if connection.vendor != "sqlite":
        password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
        yield f"postgres://{database['USER']}{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        return
    # The SQLite test database lives in memory: hand the child a file copy, then copy it back.
    path = tmp_path / "shared.sqlite3"
    connection.ensure_connection()
    with closing(sqlite3.connect(path)) as copy:
        connection.connection.backup(copy)
    yield f"sqlite:///{path}"
    with closing(sqlite3.connect(path)) as copy:
        copy.backup(connection.connection)


@pytest.mark.django_db(transaction=True)
def test_console_script_import_roster(tmp_path: Path) -> None:
    school = make_school()
    script = str(Path(sys.executable).with_name("mimamori"))
    bad, good = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.write_bytes(BAD.encode("utf-8"))
    good.write_bytes(JAPANESE.encode("cp932"))
    out = tmp_path / "out" / "letters.html"
    out.parent.mkdir()
    with _database_for_subprocess(tmp_path) as url:
        env = dict(os.environ, DATABASE_URL=url)
        failed = subprocess.run(
            [script, "import-roster", str(bad), "--school", str(school.pk)],
            capture_output=True,
            text=True,
            env=env,
        )
        done = subprocess.run(
            [script, "import-roster", str(good), "--school", str(school.pk), "--letters", str(out)],
            capture_output=True,
            text=True,
            env=env,
        )
    assert failed.returncode != 0
    assert "3行目 [メールアドレス1]" in failed.stderr
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    _assert_imported(school)  # exactly the two good children: the bad run left nothing
    html = out.read_text(encoding="utf-8")
    for registrant in Registrant.objects.filter(school=school):
        code = re.search(rf"{registrant.login_id}</td>.*?class=\"code\">([A-Z0-9-]+)<", html, re.S)
        assert code
        assert registrant.registration_code_matches(code.group(1))


def test_console_upload_for_own_school_and_404_for_another() -> None:
    school, other = make_school(), make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    client = Client()
    client.force_login(staff)
    url = reverse("console:roster_upload", args=[school.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "名簿" in page.content.decode()

    bad = client.post(url, {"file": SimpleUploadedFile("r.csv", BAD.encode("cp932"))})
    assert bad.status_code == 400
    text = bad.content.decode()
    assert "<th>行</th><th>列</th><th>内容</th>" in text
    assert "メールアドレス1" in text
    assert Registrant.objects.filter(school=school).count() == 0

    done = client.post(url, {"file": SimpleUploadedFile("r.csv", JAPANESE.encode("cp932"))})
    assert done.status_code == 200
    _assert_imported(school)
    html = done.content.decode()
    for registrant in Registrant.objects.filter(school=school):
        assert registrant.login_id in html

    outside = reverse("console:roster_upload", args=[other.pk])
    assert client.get(outside).status_code == 404
    post = client.post(outside, {"file": SimpleUploadedFile("r.csv", JAPANESE.encode())})
    assert post.status_code == 404
    assert Registrant.objects.filter(school=other).count() == 0


def test_console_reissues_letters_for_registrants_of_the_school_only() -> None:
    school, other = make_school(), make_school()
    pending = make_registrant(school, password=None)
    finished = make_registrant(school)
    foreign = make_registrant(other, password=None)
    staff = make_staff(Role.SCHOOL, school=school)
    client = Client()
    client.force_login(staff)
    page = client.get(reverse("console:roster_upload", args=[school.pk])).content.decode()
    assert pending.login_id in page
    assert finished.login_id not in page

    url = reverse("console:letters", args=[school.pk])
    response = client.post(url, {"registrant": [pending.pk, foreign.pk]})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="letter"') == 1
    code = re.search(rf"{pending.login_id}</td>.*?class=\"code\">([A-Z0-9-]+)<", html, re.S)
    assert code
    pending.refresh_from_db()
    assert pending.registration_code_matches(code.group(1))
    assert foreign.login_id not in html
    assert (
        client.post(reverse("console:letters", args=[other.pk]), {"registrant": [foreign.pk]}).status_code
        == 404
    )
    # A guardian who logged in can get a new letter too (P11: tests/test_recovery.py).
    assert client.post(url, {"registrant": [finished.pk]}).status_code == 200
    deregister(finished)
    assert client.post(url, {"registrant": [finished.pk]}).status_code == 400


# Batches: the import writes BATCH_SIZE children at a time, all in one transaction.


def _roster(count: int, start: int = 0) -> bytes:
    """A roster of ``count`` children, each with an address in slot 1 and one in slot 3."""
    lines = ["学年,組,児童氏名,ふりがな,メールアドレス1,メールアドレス2,メールアドレス3"]
    lines += [
        f"{i % 6 + 1}年,{i % 4 + 1}組,見守 太郎{i},{'みまもり たろう' if i % 2 else ''},"
        f"hogosha{i}@docomo.ne.jp,,sofubo{i}@ezweb.ne.jp"
        for i in range(start, start + count)
    ]
    return "\n".join(lines).encode()


@pytest.fixture
def batches_of_ten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roster_module, "BATCH_SIZE", 10)


@contextmanager
def _failing_at_address_batch(number: int) -> Iterator[None]:
    """A real database error (an unknown table) in place of the ``number``th address INSERT."""
    seen = 0

    def fail(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal seen
        if sql.startswith('INSERT INTO "registry_address"'):
            seen += 1
            if seen == number:
                return execute('INSERT INTO "no_such_table" VALUES (1)', None, many, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail):
        yield


@pytest.mark.usefixtures("batches_of_ten")
def test_a_roster_of_several_batches_imports_every_row_with_addresses_and_letters() -> None:
    school = make_school()
    seen: list[tuple[int, int]] = []
    roster, letters = _import(school, _roster(35), lambda done, total: seen.append((done, total)))
    assert roster.ok, roster.errors
    assert roster.created == 35
    registrants = Registrant.objects.filter(school=school).select_related("account")
    assert registrants.count() == 35
    codes = _codes(letters)
    assert letters.count('class="letter"') == len(codes) == 35
    for registrant in registrants.prefetch_related("addresses"):
        i = int(registrant.child_name.removeprefix("見守 太郎"))
        assert (registrant.grade, registrant.class_name) == (i % 6 + 1, str(i % 4 + 1))
        assert registrant.addresses_by_slot() == {
            1: f"hogosha{i}@docomo.ne.jp",
            2: "",
            3: f"sofubo{i}@ezweb.ne.jp",
            4: "",
        }
        assert registrant.registration_code_matches(codes[registrant.login_id])
        assert not registrant.account.has_usable_password()
    # Both phases report per batch: reading, then writing.
    assert seen == [(10, 35), (20, 35), (30, 35), (35, 35)] * 2


@pytest.mark.usefixtures("batches_of_ten")
def test_cli_imports_several_batches_into_one_private_letters_file(tmp_path: Path) -> None:
    school = make_school()
    roster = tmp_path / "roster.csv"
    roster.write_bytes(_roster(25))
    stderr = StringIO()
    call_command("import_roster", str(roster), school=school.pk, stdout=StringIO(), stderr=stderr)
    assert Registrant.objects.filter(school=school).count() == 25
    letters = tmp_path / "roster-letters.html"
    assert len(_codes(letters.read_text(encoding="utf-8"))) == 25
    assert oct(letters.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roster-letters.html", "roster.csv"]
    assert stderr.getvalue().count("25/25") == 2  # the checking bar and the importing bar


@pytest.mark.usefixtures("batches_of_ten")
def test_a_database_error_in_the_third_batch_leaves_nothing() -> None:
    school = make_school()
    before = _counts()
    letters = StringIO()
    with _failing_at_address_batch(3), pytest.raises(DatabaseError):
        import_roster(school, _roster(40), letters=letters)
    assert _counts() == before
    assert Address.objects.filter(registrant__school=school).count() == 0
    # Two batches' letters reached the stream; the caller throws them away.
    assert letters.getvalue().count('class="letter"') == 20


@pytest.mark.usefixtures("batches_of_ten")
def test_cli_reports_a_database_error_and_keeps_the_earlier_letters_file(tmp_path: Path) -> None:
    school = make_school()
    roster = tmp_path / "roster.csv"
    roster.write_bytes(_roster(40))
    earlier = tmp_path / "roster-letters.html"
    earlier.write_text("letters of an earlier import", encoding="utf-8")
    before = _counts()
    with _failing_at_address_batch(3), pytest.raises(CommandError, match="何も取り込んでいません"):
        call_command("import_roster", str(roster), school=school.pk, stdout=StringIO(), stderr=StringIO())
    assert _counts() == before
    assert earlier.read_text(encoding="utf-8") == "letters of an earlier import"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roster-letters.html", "roster.csv"]


def test_a_rule_only_the_model_knows_is_reported_at_its_line_in_a_later_batch(
    batches_of_ten: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    school = make_school()
    before = _counts()
    # As if the reader allowed a longer class than the model: line 25 breaks only the model's rule.
    monkeypatch.setattr(roster_module, "MAX_CLASS", 40)
    data = _roster(30).decode().splitlines()
    data[24] = data[24].replace("組,", "組" + "長" * 20 + ",", 1)
    roster, _letters = _import(school, "\n".join(data).encode())
    assert [(e.line, e.column) for e in roster.errors] == [(25, "")]
    assert "16" in roster.errors[0].message
    assert roster.created == 0
    assert _counts() == before


def test_a_login_id_that_is_taken_is_not_given_again(monkeypatch: pytest.MonkeyPatch) -> None:
    school = make_school()
    taken = make_registrant(school).login_id
    drawn = iter([taken, taken, "20000001", "20000002"])
    monkeypatch.setattr(registrants_module, "new_login_id", lambda: next(drawn))
    roster, letters = _import(school, _roster(2))
    assert roster.ok, roster.errors
    assert sorted(_codes(letters)) == ["20000001", "20000002"]
    assert User.objects.filter(username=taken).count() == 1


@pytest.mark.usefixtures("batches_of_ten")
def test_a_login_id_taken_by_a_concurrent_enrolment_retries_the_batch() -> None:
    school = make_school()
    raced: list[str] = []  # the login ID the other process took
    inserts: list[str] = []  # this import's account INSERTs

    def concurrent_enrolment(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith('INSERT INTO "accounts_user"'):
            inserts.append(sql)
        result = execute(sql, params, many, context)
        if not raced and '"accounts_user"."username" IN' in sql:
            # Between the check and the insert, another process creates a user with one of the IDs.
            raced.append(params[0])
            User.objects.create(username=params[0])
            inserts.pop()
        return result

    with connection.execute_wrapper(concurrent_enrolment):
        roster, letters = _import(school, _roster(25))
    assert roster.ok, roster.errors
    assert roster.created == 25
    assert len(inserts) == 4  # three batches, the first of them twice
    assert raced[0] not in _codes(letters)
    assert not Registrant.objects.filter(account__username=raced[0]).exists()
    assert Registrant.objects.filter(school=school).count() == 25


@pytest.mark.usefixtures("batches_of_ten")
def test_queries_grow_per_batch_not_per_row() -> None:
    def queries(rows: int) -> int:
        school = make_school()
        roster = read_roster(school, _roster(rows))
        with CaptureQueriesContext(connection) as captured:
            create_registrants(school, roster, letters=StringIO())
        assert roster.created == rows
        return len(captured)

    one, two, four = queries(10), queries(20), queries(40)
    per_batch = two - one
    assert four == one + 3 * per_batch
    # Savepoint, the login-ID check, the accounts in their own savepoint, registrants, addresses.
    assert per_batch <= 8


def _ordinary(enrolments: list[Enrolment]) -> str:
    """The letters document as Django renders its two templates, one letter at a time, without
    the writer's frames. (When the templates were split out of one, a02ca33's, this rendering
    was proved equal to that one's, byte for byte.)"""
    url = letters_module.first_login_url()
    body = "".join(
        render_to_string("registry/letter.html", {"enrolment": e, "first_login_url": url}) for e in enrolments
    )
    # The letters are the templates' own, escaped output.
    letters = mark_safe(body)  # noqa: S308
    return render_to_string("registry/letters.html", {"letter_count": len(enrolments), "letters": letters})


def test_letters_are_byte_for_byte_what_the_templates_render() -> None:
    school = make_school(name="第1小学校 <&>")
    other = make_school()
    data = (
        "学年,組,児童氏名,ふりがな\n"
        "1,1,見守 花子,みまもり はなこ\n"
        '2,Ａ組,O\'Brien & <Sons> "Jr",\n'
        "9,さくら,岩見沢 一郎,いわみざわ & いちろう\n"
        "3,2,滝川 次郎,\n"
    ).encode()
    with mock.patch.object(letters_module, "_render_letter", wraps=letters_module._render_letter) as rendered:
        roster, letters = _import(school, data)
    assert roster.ok, roster.errors
    # The template itself is rendered only to learn and prove the two frames (with and without kana).
    assert rendered.call_count == 4
    codes = _codes(letters)
    imported = Registrant.objects.filter(school=school).order_by("pk").select_related("account")
    enrolments = [Enrolment(r, codes[r.login_id]) for r in imported]
    assert letters == _ordinary(enrolments)

    # The re-issue path: letters of two schools in one document.
    mixed = [*enrolments[:2], enrol(other, child_name="夕張 三郎", grade=4, class_name="3"), enrolments[3]]
    assert letters_html(mixed) == _ordinary(mixed)


def test_letters_fall_back_to_the_template_when_a_frame_does_not_prove_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    school = make_school()
    enrolments = [
        enrol(school, child_name="O'Brien & <Sons>", child_name_kana="おぶらいえん", grade=2, class_name="1"),
        enrol(school, child_name="見守 花子", child_name_kana="みまもり はなこ", grade=3, class_name="2"),
    ]
    # A frame filled in without escaping differs from the template for the first letter.
    monkeypatch.setattr(letters_module, "escape", str)
    assert letters_html(enrolments) == _ordinary(enrolments)


@pytest.mark.django_db(transaction=True)
def test_planner_statistics_are_refreshed_once_the_import_has_committed() -> None:
    school = make_school()
    started = timezone.now()
    roster, _letters = _import(school, _roster(30))
    assert roster.ok, roster.errors
    tables = ["accounts_user", "registry_registrant", "registry_address"]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT s.relname, s.last_analyze, c.reltuples FROM pg_stat_user_tables s"
                " JOIN pg_class c ON c.oid = s.relid WHERE s.relname = ANY(%s)",
                [tables],
            )
            analyzed = {name: (when, rows) for name, when, rows in cursor.fetchall()}
            assert set(analyzed) == set(tables)
            for when, _rows in analyzed.values():
                assert when is not None
                assert when >= started
            # The statistics count the imported rows, not the empty tables an open import hides.
            assert analyzed["registry_registrant"][1] == 30
            assert analyzed["registry_address"][1] == 60
        else:
            cursor.execute("SELECT tbl, stat FROM sqlite_stat1")
            stat1 = dict(cursor.fetchall())
            assert set(tables) <= set(stat1)
            assert stat1["registry_registrant"].startswith("30 ")  # rows, then rows per index key
