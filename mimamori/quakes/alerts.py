"""The broadcast that sends itself when the ground shakes (B10).

    jma-ingest / the feed (part B) ──► receive(report, document)
        for each municipality whose cities (or areas) in the report reach its threshold:
        通常 + 発表/訂正, first report of the EventID ──► QuakeAlert + an urgent 安否確認 broadcast
            to every school of the municipality (broadcasts/sending.compose, by the system account)
            hold 0: sending.send at once │ hold N s: sending.schedule(at) + release task at that
            moment (tasks.release_quake_alert, urgent queue); the sweep's release_due is the net
        a later report of the same EventID ──► the alert updated (intensity, places), staff told;
            a held broadcast's text follows; never a second send
        取消 ──► a held alert cancelled; a sent one: staff told
        訓練 / 試験 (and start_drill by hand) ──► staff get the mail guardians would get, 【訓練】
    staff, on the console ──► cancel(alert) during the hold

Staff are told by mail through the outbox (mails.staff_notice, kind "quake_notice") and see every
alert on the console's 地震 page. Everything is audited.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from mimamori import tasking
from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import SUBJECT_MAX, Broadcast, BroadcastStatus
from mimamori.broadcasts.targeting import Scope
from mimamori.quakes import jma, notices
from mimamori.quakes.models import AlertStatus, EarthquakeSettings, JmaDocument, QuakeAlert, intensity_label
from mimamori.registry.models import Municipality

log = logging.getLogger(__name__)

# Who wrote the broadcasts and the audit events: the JMA's report, not a person.
SYSTEM_USERNAME = "mimamori-quake"
SYSTEM_NAME = "気象庁地震情報（自動）"
PLACES_NAMED = 5  # more places than this: 「…ほか」


def system_account() -> User:
    """The account quake broadcasts are created by: inactive, no usable password, no role, so
    nobody can sign in as it and no staff list offers it a reset link."""
    user, _created = User.objects.get_or_create(
        username=SYSTEM_USERNAME,
        defaults={"is_active": False, "last_name": SYSTEM_NAME, "password": make_password(None)},
    )
    return user


def settings_of(municipality: Municipality) -> EarthquakeSettings:
    """The municipality's settings; the defaults (off) when it never saved any."""
    try:
        return EarthquakeSettings.objects.get(municipality=municipality)
    except EarthquakeSettings.DoesNotExist:
        return EarthquakeSettings(municipality=municipality)


# --- which places count ------------------------------------------------------------------


def reached_places(config: EarthquakeSettings, report: jma.Report) -> list[jma.Place]:
    """The municipality's cities (and areas, when configured) at or above its threshold,
    strongest first. 震度５弱以上未入電 arrives as 5- with ``unreported`` and counts as 5弱."""
    if not config.enabled:
        return []
    places = [p for p in report.cities if p.code in config.city_codes]
    places += [p for p in report.areas if p.code in config.area_codes]
    reached = [
        p for p in places if p.intensity in jma.INTENSITIES and jma.reaches(p.intensity, config.threshold)
    ]
    return sorted(reached, key=lambda p: (-jma.rank(p.intensity), p.unreported, p.code))


def fill(template: str, report: jma.Report, places: list[jma.Place]) -> str:
    """The template with {場所} {震度} {発生時刻} {震源} filled in from the places reached."""
    names = list(dict.fromkeys(p.name or p.code for p in places))
    where = "、".join(names[:PLACES_NAMED]) + ("ほか" if len(names) > PLACES_NAMED else "")
    strongest = places[0] if places else None
    if strongest is None:
        shaking = ""
    elif strongest.unreported and not any(
        not p.unreported and p.intensity == strongest.intensity for p in places
    ):
        shaking = f"{intensity_label(strongest.intensity)}以上"
    else:
        shaking = intensity_label(strongest.intensity)
    when = timezone.localtime(report.origin_time or report.reported_at)
    values = {
        "{場所}": where,
        "{震度}": shaking,
        "{発生時刻}": f"{when.month}月{when.day}日 {when.hour}時{when.minute:02d}分",
        "{震源}": report.hypocentre or "調査中",
    }
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


def _strongest(places: list[dict[str, Any]]) -> str:
    return max((p["intensity"] for p in places), key=jma.rank)


def _place_rows(places: list[jma.Place]) -> list[dict[str, Any]]:
    return [
        {"code": p.code, "name": p.name, "intensity": p.intensity, "unreported": p.unreported} for p in places
    ]


def _history_entry(
    report: jma.Report, places: list[jma.Place], document: JmaDocument | None
) -> dict[str, Any]:
    return {
        "kind": str(report.kind),
        "status": str(report.status),
        "info_type": str(report.info_type),
        "serial": report.serial,
        "max_intensity": places[0].intensity if places else None,
        "reported_at": report.reported_at.isoformat(),
        "received_at": timezone.now().isoformat(),
        "document": document.pk if document is not None else None,
    }


def _report_fields(report: jma.Report) -> dict[str, Any]:
    return {
        "kind": str(report.kind),
        "report_status": str(report.status),
        "info_type": str(report.info_type),
        "serial": report.serial,
        "reported_at": report.reported_at,
        "headline": report.headline[:2000],
        "origin_time": report.origin_time,
        "hypocentre": report.hypocentre[:64],
        "magnitude": report.magnitude[:16],
    }


# --- receiving a report --------------------------------------------------------------------


def receive(report: jma.Report, document: JmaDocument | None = None) -> list[QuakeAlert]:
    """Act on one JMA report (``document`` is the stored JmaDocument it came from, if any);
    returns the alerts it raised or touched. Safe to call twice with the same report."""
    if report.info_type == jma.InfoType.CANCELLED:
        return _withdraw(report, document)
    touched = []
    configs = EarthquakeSettings.objects.select_related("municipality").order_by("municipality__code")
    for config in configs:
        places = reached_places(config, report)
        if places:
            touched.append(_raise(config, report, places, document))
    return touched


def start_drill(municipality: Municipality, by: User) -> QuakeAlert:
    """A drill started by hand: staff who are told get exactly the mail guardians would get,
    marked 訓練, as if the municipality's first city had reached its threshold now."""
    config = settings_of(municipality)
    now = timezone.now()
    code = config.city_codes[0] if config.city_codes else ""
    place = jma.Place(code=code, name=municipality.name, intensity=config.threshold)
    report = jma.Report(
        kind=jma.Kind.DETAIL,
        status=jma.Status.DRILL,
        info_type=jma.InfoType.ISSUED,
        event_id=f"drill-{timezone.localtime(now):%Y%m%d%H%M%S%f}",
        serial=1,
        title="震源・震度情報（訓練）",
        reported_at=now,
        headline="職員が開始した訓練です。",
        origin_time=now,
        hypocentre="（訓練）",
        max_intensity=config.threshold,
        cities=[place],
    )
    return _raise(config, report, [place], None, started_by=by)


def _raise(
    config: EarthquakeSettings,
    report: jma.Report,
    places: list[jma.Place],
    document: JmaDocument | None,
    started_by: User | None = None,
) -> QuakeAlert:
    municipality = config.municipality
    drill = report.status != jma.Status.NORMAL
    with transaction.atomic():
        alert = _locked(municipality, report.event_id, drill)
        if alert is not None:
            _update(alert, config, report, places, document)
            return alert
        now = timezone.now()
        try:
            with transaction.atomic():
                alert = QuakeAlert.objects.create(
                    municipality=municipality,
                    event_id=report.event_id[:64],
                    drill=drill,
                    status=AlertStatus.DRILL if drill else AlertStatus.HELD,
                    max_intensity=places[0].intensity,
                    places=_place_rows(places),
                    history=[_history_entry(report, places, document)],
                    created_at=now,
                    updated_at=now,
                    started_by=started_by,
                    **_report_fields(report),
                )
        except IntegrityError:
            # Another process took this EventID first (the same document twice at once).
            alert = _locked(municipality, report.event_id, drill)
            assert alert is not None
            _update(alert, config, report, places, document)
            return alert
        subject = fill(config.subject, report, places)[:SUBJECT_MAX]
        body = fill(config.body, report, places)
        if drill:
            _record(alert, "quake.drill", actor=started_by, subject=subject)
            # As the real one would go: without answers where the city offers no confirmation links.
            answers = config.answers if municipality.confirmation_links_enabled else []
            notices.tell(alert, config, notices.DRILL, subject=subject, body=body, answers=answers)
            return alert
        _send(alert, config, subject, body)
    return alert


def _locked(municipality: Municipality, event_id: str, drill: bool) -> QuakeAlert | None:
    return (
        QuakeAlert.objects.select_for_update(of=("self",))
        .filter(municipality=municipality, event_id=event_id[:64], drill=drill)
        .first()
    )


def _send(alert: QuakeAlert, config: EarthquakeSettings, subject: str, body: str) -> None:
    """Compose the 安否確認 broadcast to every school of the municipality and send it, now or
    at the end of the hold."""
    municipality = alert.municipality
    scope = Scope(municipalities=[municipality])
    try:
        broadcast = sending.compose(
            system_account(), subject=subject, body=body, scope=scope, urgent=True, answers=config.answers
        )
    except ValidationError as error:
        # A municipality that offers no confirmation links cannot take answers (S12): the
        # earthquake mail still goes, as an urgent mail without them.
        log.warning("quake alert %s sent without answers: %s", alert.pk, error)
        broadcast = sending.compose(system_account(), subject=subject, body=body, scope=scope, urgent=True)
    alert.broadcast = broadcast
    now = timezone.now()
    try:
        if config.hold_seconds:
            alert.hold_until = now + timedelta(seconds=config.hold_seconds)
            sending.schedule(broadcast, alert.hold_until)
            _queue_release(alert)
            alert.status = AlertStatus.HELD
        else:
            sending.send(broadcast)
            alert.status, alert.sent_at = AlertStatus.SENT, now
    except sending.NoRecipients:
        sending.discard(broadcast, system_account())
        alert.broadcast, alert.status = None, AlertStatus.UNSENT
    alert.save(update_fields=["broadcast", "hold_until", "status", "sent_at"])
    _record(alert, "quake.alert_raised", subject=subject, hold_seconds=config.hold_seconds)
    event = {AlertStatus.HELD: notices.HELD, AlertStatus.SENT: notices.SENT}.get(
        AlertStatus(alert.status), notices.UNSENT
    )
    notices.tell(alert, config, event, subject=subject, body=body, answers=broadcast.answers)


def _queue_release(alert: QuakeAlert) -> None:
    from mimamori.quakes.tasks import release_quake_alert

    # On the urgent queue, first in line: the hold's end is the moment the alert is due.
    tasking.enqueue(
        release_quake_alert, alert.pk, queue=tasking.URGENT, priority=100, run_after=alert.hold_until
    )


def _update(
    alert: QuakeAlert,
    config: EarthquakeSettings,
    report: jma.Report,
    places: list[jma.Place],
    document: JmaDocument | None,
) -> None:
    """A later report on an alerted earthquake (locked): kept, and staff told when it says
    more (stronger, more places, a correction). Never a second broadcast."""
    seen = {(h["kind"], h["info_type"], h["serial"]) for h in alert.history}
    if (str(report.kind), str(report.info_type), report.serial) in seen:
        return  # the same document again
    old_intensity, old_codes = alert.max_intensity, {p["code"] for p in alert.places}
    merged = {p["code"]: p for p in alert.places}
    for row in _place_rows(places):
        kept = merged.get(row["code"])
        if kept is None or jma.rank(row["intensity"]) > jma.rank(kept["intensity"]) or kept["unreported"]:
            merged[row["code"]] = row
    alert.places = sorted(merged.values(), key=lambda p: (-jma.rank(p["intensity"]), p["code"]))
    alert.max_intensity = _strongest(alert.places)
    alert.history = [*alert.history, _history_entry(report, places, document)]
    newest = report.serial >= alert.serial
    if newest:
        for field, value in _report_fields(report).items():
            setattr(alert, field, value)
    alert.updated_at = timezone.now()
    alert.save()
    stronger = jma.rank(alert.max_intensity) > jma.rank(old_intensity)
    news = stronger or not old_codes >= set(merged) or report.info_type == jma.InfoType.CORRECTED
    _record(alert, "quake.alert_updated", stronger=stronger, received_serial=report.serial)
    if not news:
        return
    current = [jma.Place(p["code"], p["name"], p["intensity"], p["unreported"]) for p in alert.places]
    subject = fill(config.subject, report, current)[:SUBJECT_MAX]
    body = fill(config.body, report, current)
    if alert.is_held and alert.broadcast_id is not None:
        # Still held: guardians will read the latest figures.
        Broadcast.objects.filter(pk=alert.broadcast_id, status=BroadcastStatus.SCHEDULED).update(
            subject=subject, body=body
        )
    notices.tell(
        alert,
        config,
        notices.UPDATED,
        subject=subject,
        body=body,
        answers=config.answers,
        previous=old_intensity,
    )


def _withdraw(report: jma.Report, document: JmaDocument | None) -> list[QuakeAlert]:
    """取消: the JMA withdrew its report. A held alert is cancelled; a sent one cannot be, and
    staff are told so they can follow up by hand."""
    drill = report.status != jma.Status.NORMAL
    touched = []
    ids = QuakeAlert.objects.filter(event_id=report.event_id[:64], drill=drill).values_list("pk", flat=True)
    for alert_id in list(ids):
        with transaction.atomic():
            alert = (
                QuakeAlert.objects.select_for_update(of=("self",))
                .select_related("municipality")
                .get(pk=alert_id)
            )
            seen = {(h["kind"], h["info_type"], h["serial"]) for h in alert.history}
            if (str(report.kind), str(report.info_type), report.serial) in seen:
                continue
            alert.history = [*alert.history, _history_entry(report, [], document)]
            alert.info_type, alert.updated_at = str(report.info_type), timezone.now()
            config = settings_of(alert.municipality)
            if alert.is_held:
                _call_off(alert, None)
                alert.save()
                _record(alert, "quake.alert_withdrawn", held=True)
                notices.tell(alert, config, notices.WITHDRAWN)
            else:
                alert.save()
                _record(alert, "quake.alert_withdrawn", held=False, status=alert.status)
                # Only a sent alert needs following up by hand; a drill's or an unsent one's did not go.
                sent = alert.status == AlertStatus.SENT
                notices.tell(alert, config, notices.WITHDRAWN_LATE if sent else notices.WITHDRAWN)
            touched.append(alert)
    return touched


def _call_off(alert: QuakeAlert, by: User | None) -> bool:
    """Cancel the held broadcast (locked alert); False if it has left already."""
    if alert.broadcast is not None and not sending.cancel(alert.broadcast, by):
        return False
    alert.status, alert.cancelled_at, alert.cancelled_by = AlertStatus.CANCELLED, timezone.now(), by
    return True


# --- staff and the hold ----------------------------------------------------------------------


def cancel(alert: QuakeAlert, by: User) -> bool:
    """Staff call off a held alert from the console; False if it is no longer held (sent,
    cancelled already)."""
    with transaction.atomic():
        locked = (
            QuakeAlert.objects.select_for_update(of=("self",)).select_related("municipality").get(pk=alert.pk)
        )
        if not locked.is_held or not _call_off(locked, by):
            return False
        locked.updated_at = timezone.now()
        locked.save()
        _record(locked, "quake.alert_cancelled", actor=by)
        notices.tell(locked, settings_of(locked.municipality), notices.CANCELLED, by=by)
    alert.refresh_from_db()
    return True


def release(alert_id: int) -> bool:
    """The hold is over: send the alert's broadcast (unless the sweep's send_due started it a
    moment ago); True if this call moved the alert to sent. Run by the task queued for the
    hold's end and by the sweep (release_due), whichever comes first."""
    now = timezone.now()
    with transaction.atomic():
        alert = (
            QuakeAlert.objects.select_for_update(of=("self",))
            .select_related("municipality", "broadcast")
            .filter(pk=alert_id)
            .first()
        )
        if alert is None or not alert.is_held:
            return False
        assert alert.hold_until is not None
        assert alert.broadcast is not None
        if alert.hold_until > now:
            _queue_release(alert)  # early (a clock step): try again at the hold's end
            return False
        broadcast = alert.broadcast
        try:
            if broadcast.is_scheduled:
                sending.send(broadcast)
        except sending.NoRecipients:
            sending.cancel(broadcast)
            alert.status = AlertStatus.UNSENT
        else:
            broadcast.refresh_from_db()
            if broadcast.status == BroadcastStatus.CANCELLED:
                alert.status, alert.cancelled_at = AlertStatus.CANCELLED, now
            else:
                alert.status, alert.sent_at = AlertStatus.SENT, now
        alert.updated_at = now
        alert.save()
        _record(alert, "quake.alert_released", status=alert.status)
        event = notices.SENT if alert.status == AlertStatus.SENT else notices.UNSENT
        if alert.status != AlertStatus.CANCELLED:
            notices.tell(
                alert,
                settings_of(alert.municipality),
                event,
                subject=broadcast.subject,
                body=broadcast.body,
                answers=broadcast.answers,
            )
    return alert.status == AlertStatus.SENT


def release_due(now: datetime) -> int:
    """The sweep's step: held alerts whose hold is over (their task lost or late); how many sent."""
    due = QuakeAlert.objects.filter(status=AlertStatus.HELD, hold_until__lte=now).values_list("pk", flat=True)
    return sum(release(alert_id) for alert_id in list(due[:100]))


def alerts_for(user: User) -> QuerySet[QuakeAlert]:
    """The alerts a staff member may see: the centre all, a municipality's staff their own.
    School staff see none here (the broadcast is the municipality's, not the school's)."""
    alerts = QuakeAlert.objects.select_related("municipality", "broadcast")
    if user.is_console_user and user.role == "centre":
        return alerts
    if user.is_console_user and user.role == "municipality" and user.municipality_id is not None:
        return alerts.filter(municipality_id=user.municipality_id)
    return alerts.none()


def can_manage(user: User) -> bool:
    """May see the 地震 page, change the settings, cancel and start drills (in scope)."""
    return user.is_console_user and user.role in ("centre", "municipality")


def _record(alert: QuakeAlert, action: str, actor: User | None = None, **details: Any) -> None:
    audit.record(
        action,
        actor=actor,
        actor_name="" if actor is not None else SYSTEM_NAME,
        target=f"quake alert {alert.pk}",
        municipality=alert.municipality_id,
        event_id=alert.event_id,
        serial=alert.serial,
        report=f"{alert.kind} {alert.report_status} {alert.info_type}",
        max_intensity=alert.max_intensity,
        places=[p["name"] or p["code"] for p in alert.places],
        broadcast=alert.broadcast_id,
        **details,
    )
