"""The municipality's emblem (市章): checked, re-encoded, stored, removed and audited.

An upload is accepted only if Pillow decodes it as PNG or JPEG (no SVG: it can carry script;
no GIF, WebP, …), it is at most MAX_BYTES, and its pixel size is sane before decoding (a small
file may claim a huge image). What is stored is a PNG encoded here from the decoded pixels,
scaled down to MAX_SIDE×MAX_SIDE at most: no metadata, no colour profile, no trailing bytes of
the upload survive. Municipality staff change their own city's emblem, the centre any
(registry/access.py ``can_change_emblem``); every change is audited as
``municipality.emblem_changed``.
"""

from __future__ import annotations

import hashlib
import io
import warnings

from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.registry.models import Municipality, MunicipalityEmblem

MAX_BYTES = 200 * 1024
MAX_SIDE = 128
# The largest upload decoded at all, per side: an emblem needs far less, and a 200 KB PNG can
# describe a canvas that fills memory when decoded.
MAX_DECODED_SIDE = 4096
FORMATS = ("PNG", "JPEG")


class EmblemRefused(ValueError):
    """The upload is not an emblem we keep; the message says why, in the user's language."""


def clean_png(data: bytes) -> tuple[bytes, int, int]:
    """A PNG of the upload's pixels, at most MAX_SIDE×MAX_SIDE, and its size; or EmblemRefused."""
    if len(data) > MAX_BYTES:
        raise EmblemRefused(_("The file is larger than 200 KB."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
            width, height = image.size
            if width > MAX_DECODED_SIDE or height > MAX_DECODED_SIDE:
                raise EmblemRefused(_("The image is too large: at most 4096×4096 pixels."))
            image.load()
    except EmblemRefused:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ):
        raise EmblemRefused(_("The file is not a PNG or JPEG image that can be read.")) from None
    # A phone photo's rotation is in its EXIF data, which is not kept: apply it to the pixels.
    upright: Image.Image = ImageOps.exif_transpose(image)
    has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
    rgb = upright.convert("RGBA" if has_alpha else "RGB")
    rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    # A new image from the pixels alone: nothing of the upload's info (ICC profile, text
    # chunks, EXIF) can reach the encoder.
    pixels = Image.frombytes(rgb.mode, rgb.size, rgb.tobytes())
    out = io.BytesIO()
    pixels.save(out, format="PNG", optimize=True)
    return out.getvalue(), pixels.width, pixels.height


def change_emblem(
    municipality: Municipality, data: bytes, *, by: User, request: HttpRequest | None = None
) -> MunicipalityEmblem:
    """Store the upload's pixels as the municipality's emblem (replacing any), audited."""
    png, width, height = clean_png(data)
    digest = hashlib.sha256(png).hexdigest()
    with transaction.atomic():
        emblem, created = MunicipalityEmblem.objects.update_or_create(
            municipality=municipality,
            defaults={"png": png, "digest": digest, "width": width, "height": height},
        )
        record(
            "municipality.emblem_changed",
            actor=by,
            target=f"municipality {municipality.code}",
            municipality=municipality,
            request=request,
            change="uploaded" if created else "replaced",
            width=width,
            height=height,
            digest=digest,
        )
    return emblem


def remove_emblem(municipality: Municipality, *, by: User, request: HttpRequest | None = None) -> bool:
    """Remove the emblem; False (and nothing audited) if there was none."""
    with transaction.atomic():
        deleted, _rows = MunicipalityEmblem.objects.filter(municipality=municipality).delete()
        if deleted:
            record(
                "municipality.emblem_changed",
                actor=by,
                target=f"municipality {municipality.code}",
                municipality=municipality,
                request=request,
                change="removed",
            )
    return bool(deleted)


def emblem_digest(municipality_id: int | None) -> tuple[str, int, int] | None:
    """(digest, width, height) of the municipality's emblem, without loading the image; or None."""
    if municipality_id is None:
        return None
    row = (
        MunicipalityEmblem.objects.filter(municipality_id=municipality_id)
        .values_list("digest", "width", "height")
        .first()
    )
    return row
