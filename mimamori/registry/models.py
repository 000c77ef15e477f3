"""The registry: municipalities, their schools, and registrants (one child at one school)
with up to four guardian mail addresses."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mimamori import text
from mimamori.registry.answers import answer_choices

SLOTS = (1, 2, 3, 4)
DEFAULT_BROADCAST_SLOTS = [1, 2]


class Municipality(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True, validators=[text.single_line])
    name = models.CharField(_("name"), max_length=64, validators=[text.single_line])
    mail_domain = models.CharField(
        _("mail domain"),
        max_length=253,
        validators=[
            RegexValidator(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"),
            # RegexValidator's $ also matches before a final line break.
            text.single_line,
        ],
        help_text=_("Broadcasts come from <school>@<this domain>."),
    )
    support_name = models.CharField(
        _("support desk name"), max_length=100, blank=True, validators=[text.single_line]
    )
    support_phone = models.CharField(
        _("support desk phone"), max_length=32, blank=True, validators=[text.single_line]
    )
    support_email = models.EmailField(_("support desk mail"), blank=True, validators=[text.single_line])
    support_hours = models.CharField(
        _("support desk hours"), max_length=100, blank=True, validators=[text.single_line]
    )
    # Service settings (S12): the seed's municipalities differ slightly in what they offer.
    confirmation_links_enabled = models.BooleanField(_("offer confirmation links"), default=True)
    # RFC 8058: mail clients show an 配信停止 button that turns 連絡メールを受信する off.
    one_click_unsubscribe = models.BooleanField(_("offer one-click unsubscribe"), default=True)
    broadcast_slots = models.JSONField(_("address slots that receive broadcasts"), default=list)
    maintenance_notice_lead_hours = models.PositiveIntegerField(
        _("maintenance notice lead time (hours)"), default=72
    )
    # 到達テスト (B4): every this many days the sweep sends one to each school (0: never).
    reach_test_interval_days = models.PositiveIntegerField(
        _("reach test interval (days)"),
        default=0,
        validators=[MaxValueValidator(366)],
        help_text=_(
            "Every this many days each school gets a reach test, sent between 9:00 and 18:00. "
            "0: only when staff start one."
        ),
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("municipality")
        verbose_name_plural = _("municipalities")

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        if not self.broadcast_slots:
            self.broadcast_slots = list(DEFAULT_BROADCAST_SLOTS)
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class MunicipalityEmblem(models.Model):
    """The municipality's emblem (市章), shown with its name in the portal and console headers.

    Only pixels of the upload are kept: registry/emblems.py decodes it (PNG or JPEG) and
    stores a PNG it encoded itself, at most 128×128. In the database, as the web machines
    share nothing else; its own table, so loading a municipality never loads the image.
    """

    municipality = models.OneToOneField(
        Municipality, on_delete=models.CASCADE, primary_key=True, related_name="emblem"
    )
    png = models.BinaryField()
    # SHA-256 of ``png``, hex: the version in the image's URL, and its ETag.
    digest = models.CharField(max_length=64)
    width = models.PositiveSmallIntegerField()
    height = models.PositiveSmallIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.municipality_id} {self.digest[:12]}"


class School(models.Model):
    municipality = models.ForeignKey(Municipality, on_delete=models.PROTECT, related_name="schools")
    name = models.CharField(_("name"), max_length=64, validators=[text.single_line])
    sender_local_part = models.CharField(
        _("sender local part"),
        max_length=64,
        validators=[RegexValidator(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"), text.single_line],
        help_text=_("The part before @ in the school's sender address."),
    )

    class Meta:
        ordering = ["municipality__code", "name"]
        verbose_name = _("school")
        verbose_name_plural = _("schools")
        constraints = [
            models.UniqueConstraint(
                fields=["municipality", "sender_local_part"], name="unique_school_sender"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def sender_address(self) -> str:
        return f"{self.sender_local_part}@{self.municipality.mail_domain}"


class RegistrantStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    DEREGISTERED = "deregistered", _("Deregistered")


def hash_registration_code(code: str) -> str:
    # Codes carry ~60 bits from a CSPRNG and lock out after a few wrong tries, so a fast
    # hash suffices; Argon2 here would make a 1,000-child roster import take a minute.
    normalised = code.replace("-", "").replace(" ", "").upper()
    return hashlib.sha256(normalised.encode()).hexdigest()


# No 0/O, 1/I/L: the code is typed by hand from a printed letter, often on a phone.
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_CODE_LENGTH = 12
# Random bytes become code characters by byte % 31; bytes from 248 (8 × 31) up are dropped,
# so every character stays equally likely.
_CODE_BYTES = bytes(ord(_CODE_ALPHABET[b % len(_CODE_ALPHABET)]) for b in range(256))
_CODE_DROPPED = bytes(range(256 // len(_CODE_ALPHABET) * len(_CODE_ALPHABET), 256))


def new_registration_codes(count: int) -> list[str]:
    """``count`` codes like ``ABCD-EFGH-JKMN``, drawn from the CSPRNG together.

    One read of the CSPRNG for a whole roster batch: secrets.choice reads it once per
    character, which made codes a tenth of a roster import's time.
    """
    wanted = count * _CODE_LENGTH
    raw = ""
    while len(raw) < wanted:
        raw += secrets.token_bytes(wanted - len(raw) + 16).translate(_CODE_BYTES, _CODE_DROPPED).decode()
    return [
        "-".join(raw[start + i : start + i + 4] for i in range(0, _CODE_LENGTH, 4))
        for start in range(0, wanted, _CODE_LENGTH)
    ]


def new_registration_code() -> str:
    return new_registration_codes(1)[0]


def class_key(value: str) -> str:
    """A class as the registry stores it, however it was typed: 1組, １組 and 1 are class "1"
    (full-width letters and digits folded by NFKC, a trailing 組 dropped). The roster import,
    enrolment and broadcast targeting all fold with this."""
    return unicodedata.normalize("NFKC", value).strip().removesuffix("組").strip()


def new_login_id() -> str:
    # Eight digits: easy on a phone keypad; uniqueness is enforced by the user table.
    return f"{secrets.randbelow(90_000_000) + 10_000_000}"


class Registrant(models.Model):
    """One child at one school, and the guardian login that manages its addresses."""

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="registrants")
    account = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="registrant"
    )
    child_name = models.CharField(_("child's name"), max_length=64, validators=[text.single_line])
    child_name_kana = models.CharField(
        _("child's name (kana)"), max_length=64, blank=True, validators=[text.single_line]
    )
    grade = models.PositiveSmallIntegerField(
        _("grade"), validators=[MinValueValidator(1), MaxValueValidator(9)]
    )
    class_name = models.CharField(_("class"), max_length=16, validators=[text.single_line])
    status = models.CharField(
        _("status"), max_length=16, choices=RegistrantStatus.choices, default=RegistrantStatus.ACTIVE
    )
    receive_broadcasts = models.BooleanField(_("receive broadcast mail"), default=True)
    # The IC tag in the child's school bag that the gate readers read (B6); unique in its school.
    tag_id = models.CharField(_("tag ID"), max_length=64, blank=True, validators=[text.single_line])
    registration_code_digest = models.CharField(max_length=64, blank=True)
    registration_code_issued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deregistered_at = models.DateTimeField(null=True, blank=True)
    # Set when the retention period ended and the personal data was erased (S10).
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["school", "grade", "class_name", "child_name_kana", "child_name"]
        verbose_name = _("registrant")
        verbose_name_plural = _("registrants")
        indexes = [
            models.Index(fields=["school", "status", "grade", "class_name"]),
            # The sweep asks for deregistered rows still to be erased every few seconds.
            models.Index(
                fields=["deregistered_at"],
                name="registrant_to_erase_idx",
                condition=Q(erased_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(name="registrant_grade_range", condition=Q(grade__gte=1, grade__lte=9)),
            models.UniqueConstraint(
                fields=["school", "tag_id"], name="one_child_per_tag", condition=~Q(tag_id="")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.child_name} ({self.school})"

    @property
    def login_id(self) -> str:
        return self.account.username

    @property
    def is_active(self) -> bool:
        return self.status == RegistrantStatus.ACTIVE

    @property
    def has_pending_registration(self) -> bool:
        return bool(self.registration_code_digest)

    def issue_registration_code(self, code: str = "") -> str:
        """Give the registrant a fresh one-time code (the old one stops working). Caller saves.

        ``code``: one of new_registration_codes(), when a batch of registrants drew theirs together.
        """
        code = code or new_registration_code()
        self.registration_code_digest = hash_registration_code(code)
        self.registration_code_issued_at = timezone.now()
        return code

    def registration_code_matches(self, code: str) -> bool:
        if not self.registration_code_digest:
            return False
        return secrets.compare_digest(self.registration_code_digest, hash_registration_code(code))

    def addresses_by_slot(self) -> dict[int, str]:
        found = {a.slot: a.email for a in self.addresses.all()}
        return {slot: found.get(slot, "") for slot in SLOTS}


class AddressStatus(models.TextChoices):
    """How mail to an address fares (P5, registry/health.py)."""

    OK = "ok", _("Mail arrives")
    BOUNCING = "bouncing", _("Some mail did not arrive")
    SUPPRESSED = "suppressed", _("Mail does not arrive: sending stopped")


class Address(models.Model):
    """A guardian's mail address in one of the registrant's four slots (S3)."""

    registrant = models.ForeignKey(Registrant, on_delete=models.CASCADE, related_name="addresses")
    slot = models.PositiveSmallIntegerField(_("slot"))
    email = models.CharField(_("mail address"), max_length=254, validators=[text.single_line])
    # The same for every row of one address (a mailbox that does not exist does not exist for
    # a sibling either); a suppressed address gets no mail of any kind until it is set again.
    status = models.CharField(
        _("delivery status"), max_length=16, choices=AddressStatus.choices, default=AddressStatus.OK
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["registrant", "slot"]
        verbose_name = _("address")
        verbose_name_plural = _("addresses")
        constraints = [
            models.UniqueConstraint(fields=["registrant", "slot"], name="one_address_per_slot"),
            models.UniqueConstraint(Lower("email"), "registrant", name="address_unique_within_registrant"),
            models.CheckConstraint(name="address_slot_range", condition=Q(slot__gte=1, slot__lte=4)),
        ]
        indexes = [
            # (address_unique_within_registrant leads with lower(email): health is recorded
            # through it.) Suppressed addresses are counted for each broadcast's audience and
            # listed per school, which reads only these rows.
            models.Index(
                fields=["registrant"], name="suppressed_address_idx", condition=Q(status="suppressed")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.slot}: {self.email}"


class DeregistrationReason(models.TextChoices):
    MOVING_AWAY = "moving_away", _("Transfer (outside the city)")
    TRANSFER_WITHIN = "transfer_within", _("Transfer (within the city)")
    GRADUATION = "graduation", _("Graduation")
    OTHER = "other", _("Other")


class DeregistrationSource(models.TextChoices):
    ONLINE = "online", _("Online, by the guardian")
    PAPER = "paper", _("Paper form, entered by staff")


class DeregistrationStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for approval")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    # Taken back by the guardian while it waited (issue 14): decided_by is the guardian.
    WITHDRAWN = "withdrawn", _("Withdrawn")


class DeregistrationRequest(models.Model):
    """A 登録解除届 (S10): sent online by the guardian or entered from paper by staff; staff decide."""

    registrant = models.ForeignKey(
        Registrant, on_delete=models.CASCADE, related_name="deregistration_requests"
    )
    reason = models.CharField(_("reason"), max_length=16, choices=DeregistrationReason.choices)
    note = models.CharField(_("note"), max_length=500, blank=True, validators=[text.multi_line])
    effective_on = models.DateField(_("date of deregistration"))
    # For a transfer within the city: where the new school's staff register the child again (S11).
    destination_school = models.ForeignKey(
        School,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="incoming_transfers",
        verbose_name=_("new school"),
    )
    source = models.CharField(_("how received"), max_length=8, choices=DeregistrationSource.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=DeregistrationStatus.choices, default=DeregistrationStatus.PENDING
    )
    submitted_at = models.DateTimeField(_("submitted"), default=timezone.now)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The registration the new school created from this transfer, so it is offered only once.
    new_registrant = models.ForeignKey(
        Registrant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-submitted_at", "-pk"]
        verbose_name = _("deregistration request")
        verbose_name_plural = _("deregistration requests")
        constraints = [
            # A guardian who presses the button twice files one request, not two.
            models.UniqueConstraint(
                fields=["registrant"], condition=Q(status="pending"), name="one_pending_deregistration"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} ({self.get_status_display()})"


class AddressFailure(models.Model):
    """One mail to an address that failed: refused while sending, or bounced afterwards (P5).

    Kept by address, not by slot, so the history survives a guardian moving the address to
    another slot; erased with the child's personal data once no registrant holds the address.
    """

    email = models.CharField(_("mail address"), max_length=254)  # lower-cased
    at = models.DateTimeField(_("time"), default=timezone.now)
    permanent = models.BooleanField(_("permanent"))
    no_such_user = models.BooleanField(_("no such user"))
    status = models.CharField(_("status code"), max_length=16, blank=True)
    text = models.CharField(_("server's reply"), max_length=500, blank=True)
    source = models.CharField(_("source"), max_length=16)  # "smtp" (while sending) or "bounce"

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["email", "at"], name="address_failure_email_idx")]


class ReachTest(models.Model):
    """A 到達テスト (B4): a short test mail to every address of a school's active registrants,
    to find the addresses mail no longer reaches before an emergency (registry/reachtests.py).

    Its mails are outbox mails (kind "reach_test", target ``target``), written by a task just
    after the test starts; each tested slot is a ReachTestSlot pointing at the mail that
    tested its address.
    """

    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="reach_tests")
    # False: a staff member pressed the button (started_by, unless that login was deleted since).
    scheduled = models.BooleanField(_("started by the schedule"), default=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    # When a task wrote its mails (registry/reachtests.py post); until then there are none.
    posted_at = models.DateTimeField(null=True, blank=True)
    # Distinct addresses mailed, and those left out because mail to them is suppressed.
    address_count = models.PositiveIntegerField(default=0)
    suppressed_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-pk"]
        verbose_name = _("reach test")
        verbose_name_plural = _("reach tests")
        indexes = [
            models.Index(fields=["school", "started_at"], name="reach_test_school_idx"),
            # The sweep asks every few seconds for tests whose mails are still to be written.
            models.Index(
                fields=["started_at"], name="reach_test_unposted_idx", condition=Q(posted_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.school} {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def target(self) -> str:
        """How its mails (OutgoingMail.target) and the audit log name it."""
        return f"reachtest {self.pk}"


class ReachTestSlot(models.Model):
    """One slot of one registrant in a 到達テスト, and the mail that tested its address.

    Siblings sharing an address share one mail: their rows point at the same OutgoingMail.
    ``mail`` is empty for an address that was suppressed when the test started (not mailed).
    """

    reach_test = models.ForeignKey(ReachTest, on_delete=models.CASCADE, related_name="slots")
    registrant = models.ForeignKey(Registrant, on_delete=models.CASCADE, related_name="+")
    slot = models.PositiveSmallIntegerField(_("slot"))
    email = models.CharField(_("mail address"), max_length=254)  # as it was when the test started
    mail = models.ForeignKey(
        "mail.OutgoingMail", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["reach_test", "registrant", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["reach_test", "registrant", "slot"], name="one_reach_test_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.reach_test_id} {self.registrant_id}/{self.slot}"


class AlertTemplate(models.Model):
    """A municipality's ready-made broadcast (P6): 不審者情報, 休校, …, with the places staff fill in.

    The subject and body may hold the fields of registry.alert_templates.FIELDS as ``{いつ}``,
    ``{どこで}``, ``{何が}`` and ``{保護者へのお願い}``; school staff fill them in a small form
    and go on to compose with the text that results.
    """

    municipality = models.ForeignKey(Municipality, on_delete=models.CASCADE, related_name="alert_templates")
    name = models.CharField(_("name"), max_length=64, validators=[text.single_line])
    subject = models.CharField(_("subject"), max_length=150, validators=[text.single_line])
    body = models.TextField(_("body"), max_length=10_000, validators=[text.multi_line])
    urgent = models.BooleanField(_("urgent"), default=False)
    request_confirmation = models.BooleanField(_("request read confirmation"), default=False)
    # Answer choices (B1) the broadcasts made from it offer; [] = none (registry/answers.py).
    answers = models.JSONField(_("answer choices"), default=list, blank=True, validators=[answer_choices])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["municipality", "name", "pk"]
        verbose_name = _("alert template")
        verbose_name_plural = _("alert templates")
        constraints = [
            models.UniqueConstraint(fields=["municipality", "name"], name="one_alert_template_name"),
        ]

    def __str__(self) -> str:
        return self.name
