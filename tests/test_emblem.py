"""Issue 14: the municipality's emblem (市章) — uploaded by its staff or the centre, checked and
re-encoded with Pillow, stored in the database, served cacheable under its digest, audited,
shown with the name in the portal's and the console's headers; the console's tab titles."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.registry.models import Municipality, MunicipalityEmblem
from tests.cast import make_municipality, make_registrant, make_school, make_staff

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def picture(fmt: str, size: tuple[int, int] = (300, 200), mode: str = "RGB", **save: object) -> bytes:
    colors: dict[str, float | tuple[float, ...]] = {"RGB": (200, 30, 40), "RGBA": (200, 30, 40, 128), "L": 90}
    color = colors[mode]
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def upload(user: User, city: Municipality, data: bytes, name: str = "emblem.png") -> object:
    url = reverse("console:municipality_emblem", args=[city.code])
    file = io.BytesIO(data)
    file.name = name
    return signed_in(user).post(url, {"emblem": file})


def stored(city: Municipality) -> Image.Image:
    emblem = MunicipalityEmblem.objects.get(municipality=city)
    image = Image.open(io.BytesIO(bytes(emblem.png)))
    assert image.format == "PNG"
    return image


def test_municipality_staff_upload_a_png_stored_as_a_small_png_and_audited() -> None:
    city = make_municipality()
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    response = upload(staff, city, picture("PNG", (300, 200)))
    assert response.status_code == 302  # type: ignore[attr-defined]
    image = stored(city)
    assert image.size == (128, 85)  # scaled into 128×128, proportions kept
    emblem = MunicipalityEmblem.objects.get(municipality=city)
    assert emblem.digest == hashlib.sha256(bytes(emblem.png)).hexdigest()
    event = AuditEvent.objects.get(action="municipality.emblem_changed")
    assert event.actor == staff
    assert event.details["change"] == "uploaded"
    assert event.municipality_id == city.pk


def test_a_jpeg_is_accepted_and_stored_as_png_without_its_metadata() -> None:
    city = make_municipality()
    exif = Image.Exif()
    exif[0x010E] = "secret description"  # ImageDescription
    data = picture("JPEG", (64, 64), exif=exif.tobytes())
    assert b"secret description" in data
    response = upload(make_staff(Role.CENTRE), city, data, "emblem.jpg")
    assert response.status_code == 302  # type: ignore[attr-defined]
    image = stored(city)
    assert image.size == (64, 64)
    png = bytes(MunicipalityEmblem.objects.get(municipality=city).png)
    assert b"secret description" not in png
    assert b"eXIf" not in png
    assert b"iCCP" not in png


def test_a_png_with_trailing_junk_is_reencoded_without_it() -> None:
    city = make_municipality()
    junk = b"<script>alert(1)</script>" * 10
    data = picture("PNG", (40, 40), mode="RGBA") + junk
    assert upload(make_staff(Role.CENTRE), city, data).status_code == 302  # type: ignore[attr-defined]
    png = bytes(MunicipalityEmblem.objects.get(municipality=city).png)
    assert b"<script>" not in png
    assert png.endswith(b"IEND\xaeB`\x82")  # a PNG of our own, ending where PNGs end
    assert stored(city).mode == "RGBA"  # transparency kept: an emblem on the header's colour


def _noise_png() -> bytes:
    import random

    rng = random.Random(14)
    image = Image.frombytes("RGB", (300, 300), bytes(rng.getrandbits(8) for _ in range(300 * 300 * 3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    assert len(out.getvalue()) > 200 * 1024
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"this is not an image at all", "emblem.png", "PNG または JPEG の画像として読み取れない"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><circle r="10"/></svg>',
            "emblem.svg",
            "PNG または JPEG の画像として読み取れない",
        ),
        (picture("GIF", (20, 20)), "emblem.gif", "PNG または JPEG の画像として読み取れない"),
        # A real PNG, but over 200 KB (noise does not compress).
        (
            _noise_png(),
            "big.png",
            "200 KB を超えています",
        ),
        # A small file that claims a huge canvas.
        (picture("PNG", (5000, 10), mode="L"), "wide.png", "4096 ピクセル以下"),
        # A PNG cut short: its pixels cannot be decoded.
        (picture("PNG", (100, 100))[:80], "cut.png", "PNG または JPEG の画像として読み取れない"),
    ],
    ids=["not-an-image", "svg", "gif", "too-large", "huge-canvas", "truncated"],
)
def test_anything_but_a_readable_png_or_jpeg_is_refused_with_a_reason(
    data: bytes, name: str, reason: str
) -> None:
    city = make_municipality()
    response = upload(make_staff(Role.MUNICIPALITY, municipality=city), city, data, name)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert reason in response.content.decode()  # type: ignore[attr-defined]
    assert not MunicipalityEmblem.objects.filter(municipality=city).exists()
    assert not AuditEvent.objects.filter(action="municipality.emblem_changed").exists()


def test_scope_other_city_staff_404_and_school_staff_cannot_upload() -> None:
    city, other = make_municipality(), make_municipality()
    school = make_school(city)
    url = reverse("console:municipality_emblem", args=[city.code])
    for user in (
        make_staff(Role.MUNICIPALITY, municipality=other),
        make_staff(Role.SCHOOL, school=school),
        make_staff(Role.SCHOOL, school=make_school(other)),
    ):
        assert signed_in(user).get(url).status_code == 404
        assert upload(user, city, picture("PNG")).status_code == 404  # type: ignore[attr-defined]
        assert signed_in(user).post(url, {"remove": "1"}).status_code == 404
    assert not MunicipalityEmblem.objects.exists()
    # Their own city's page, and the centre's any.
    assert signed_in(make_staff(Role.MUNICIPALITY, municipality=city)).get(url).status_code == 200
    assert signed_in(make_staff(Role.CENTRE)).get(url).status_code == 200


def _emblem_url(html: str) -> str:
    match = re.search(r'<img class="brand-emblem" src="([^"]+)" alt="([^"]+)"', html)
    assert match, "no emblem in the header"
    return match.group(1)


def test_served_as_png_cacheable_for_a_year_under_its_digest() -> None:
    city = make_municipality()
    upload(make_staff(Role.CENTRE), city, picture("PNG", (50, 50)))
    emblem = MunicipalityEmblem.objects.get(municipality=city)
    url = reverse("emblem", kwargs={"code": city.code, "digest": emblem.digest})
    response = Client().get(url)  # no login: the confirmation page shows it too
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["ETag"] == f'"{emblem.digest}"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content == bytes(emblem.png)
    # The browser's revalidation costs no image.
    again = Client().get(url, headers={"If-None-Match": f'"{emblem.digest}"'})
    assert again.status_code == 304
    assert again.content == b""
    # An unknown digest, or another city's code, is not found (and not cacheable).
    missing = Client().get(reverse("emblem", kwargs={"code": city.code, "digest": "0" * 64}))
    assert missing.status_code == 404
    assert "no-store" in missing["Cache-Control"]
    # Every other page keeps no-store.
    assert "no-store" in Client().get(reverse("portal:login"))["Cache-Control"]


def test_removal_is_audited_and_the_old_url_stops_answering() -> None:
    city = make_municipality()
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    upload(staff, city, picture("PNG", (50, 50)))
    digest = MunicipalityEmblem.objects.get(municipality=city).digest
    url = reverse("console:municipality_emblem", args=[city.code])
    response = signed_in(staff).post(url, {"remove": "1"}, follow=True)
    assert "市章を削除しました" in response.content.decode()
    assert not MunicipalityEmblem.objects.filter(municipality=city).exists()
    assert Client().get(reverse("emblem", kwargs={"code": city.code, "digest": digest})).status_code == 404
    changes = list(
        AuditEvent.objects.filter(action="municipality.emblem_changed")
        .order_by("pk")
        .values_list("details__change", flat=True)
    )
    assert changes == ["uploaded", "removed"]
    # The audit log says it as a sentence, in Japanese.
    log = signed_in(make_staff(Role.CENTRE)).get(reverse("console:audit")).content.decode()
    assert "市章の変更" in log
    assert "市章を削除しました。" in log


def test_headers_show_the_emblem_with_the_name_and_work_without_it() -> None:
    city = make_municipality(name="見守市")
    school = make_school(city)
    registrant = make_registrant(school, ["guardian@example.jp"])
    guardian = signed_in(registrant.account)
    school_staff = signed_in(make_staff(Role.SCHOOL, school=school))
    city_staff = signed_in(make_staff(Role.MUNICIPALITY, municipality=city))
    centre = signed_in(make_staff(Role.CENTRE))
    portal_home, console_home = reverse("portal:home"), reverse("console:home")

    # Without an emblem: the name, no image.
    page = guardian.get(portal_home).content.decode()
    assert "見守市" in page
    assert "brand-emblem" not in page
    page = school_staff.get(console_home).content.decode()
    assert "見守市" in page
    assert "brand-emblem" not in page

    upload(make_staff(Role.CENTRE), city, picture("PNG", (50, 50)))
    digest = MunicipalityEmblem.objects.get(municipality=city).digest
    expected = f'<img class="brand-emblem" src="/emblem/{city.code}/{digest}.png" alt="見守市"'
    for client, url in ((guardian, portal_home), (school_staff, console_home), (city_staff, console_home)):
        page = client.get(url).content.decode()
        assert expected in page, url
        assert client.get(_emblem_url(page)).status_code == 200
    # The centre works for every city: no city's emblem in its header.
    assert "brand-emblem" not in centre.get(console_home).content.decode()


def _title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match
    return " ".join(match.group(1).split())


def test_console_tab_titles_name_the_city_for_its_staff_and_never_say_mimamori() -> None:
    city = make_municipality(name="見守市")
    school = make_school(city)
    url = reverse("console:municipalities")
    for user in (make_staff(Role.MUNICIPALITY, municipality=city), make_staff(Role.SCHOOL, school=school)):
        title = _title(signed_in(user).get(url).content.decode())
        assert title == "市町村の設定 | 見守市 見守りメール 管理画面", title
    title = _title(signed_in(make_staff(Role.CENTRE)).get(url).content.decode())
    assert title == "市町村の設定 | 見守りメール 管理画面", title
    title = _title(Client().get(reverse("console:login")).content.decode())
    assert title.endswith("| 見守りメール 管理画面"), title
    assert "mimamori" not in title
