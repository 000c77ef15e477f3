"""Console pages for broadcasts: the list, compose, the preview, send, live progress, retry.

Every broadcast is fetched through broadcasts.access (get_broadcast / broadcasts_for), so
staff of one school cannot see, send or retry another school's; the work itself is done
by the verbs of mimamori.broadcasts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, Subquery, When
from django.db.models.functions import Coalesce, Lower
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.html import escape
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from mimamori.broadcasts import mails, sending, targeting
from mimamori.broadcasts.access import broadcasts_for, get_broadcast
from mimamori.broadcasts.models import OPEN, Broadcast, Delivery, DeliveryStatus
from mimamori.console.broadcast_forms import BroadcastForm
from mimamori.console.decorators import staff_required
from mimamori.console.views import _page, _render, _staff
from mimamori.mail.messages import BUILD_ERRORS
from mimamori.registry.models import Address


def _count(condition: Q) -> Subquery:
    # A subquery per column: broadcasts_for joins the scope tables, and a join on deliveries
    # next to them would multiply the counts.
    rows = (
        Delivery.objects.filter(condition, broadcast=OuterRef("pk"))
        .order_by()
        .values("broadcast")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)  # type: ignore[return-value]


@staff_required
@require_GET
def broadcasts(request: HttpRequest) -> HttpResponse:
    found = (
        broadcasts_for(_staff(request))
        .annotate(open=_count(OPEN), failed=_count(Q(status=DeliveryStatus.FAILED)))
        # Counted from the (small) indexes of open and failed mails once every mail is written.
        .annotate(
            sent=Case(
                When(fanned_out_at__isnull=False, then=F("message_count") - F("open") - F("failed")),
                default=_count(Q(status=DeliveryStatus.ACCEPTED)),
            )
        )
        .order_by("-created_at", "-pk")
    )
    return _render(request, "broadcast_list.html", {"page": _page(request, found)})


@staff_required
def broadcast_new(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    form = BroadcastForm(request.POST if request.method == "POST" else None, user=user)
    if form.is_valid():
        data = form.cleaned_data
        try:
            scope = targeting.resolve_scope(
                user,
                municipality_codes=data["municipalities"],
                school_ids=data["schools"],
                grades=data["grades"],
                classes=data["classes"],
            )
            broadcast = sending.compose(
                user,
                subject=data["subject"],
                body=data["body"],
                scope=scope,
                urgent=data["urgent"],
                request_confirmation=data.get("request_confirmation", False),
                reminder_minutes=data.get("reminder_minutes", ()),
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            return redirect("console:broadcast", broadcast_id=broadcast.pk)
    return _render(request, "broadcast_new.html", {"form": form})


def _sample_mail(broadcast: Broadcast) -> dict[str, Any] | None:
    """The mail the first address of the audience would get, built exactly as delivery builds it."""
    audience = targeting.audience(broadcast)
    first = audience.annotate(key=Lower("email")).order_by("key").values_list("key", flat=True).first()
    if first is None:
        return None
    rows: list[Address] = list(
        audience.annotate(key=Lower("email"))
        .filter(key=first)
        .select_related("registrant__school__municipality")
        .order_by("registrant__grade", "registrant__class_name", "registrant__child_name_kana")
    )
    children = [row.registrant for row in rows]
    # As the fan-out: the sender is the lowest-numbered school among the children.
    school = min((child.school for child in children), key=lambda s: s.pk)
    try:
        mail = mails.broadcast(
            school=school,
            to=rows[0].email,
            subject=broadcast.subject,
            body=broadcast.body,
            urgent=broadcast.urgent,
            children=children,
            message_id=mails.new_message_id(school),
        )
    except BUILD_ERRORS:
        return None  # data stored before the input rule; its mails fail with the reason
    # The text body comes from render_to_string, which marks it safe for HTML; it is plain text
    # holding staff input and sender addresses in <…>, so escape it for the page.
    return {
        "sender": mail.from_email,
        "to": rows[0].email,
        "subject": mail.subject,
        "body": escape(mail.body),
    }


def _scope_words(broadcast: Broadcast) -> dict[str, list[str]]:
    schools = list(broadcast.schools.select_related("municipality"))
    return {
        "municipalities": [m.name for m in broadcast.municipalities.all()],
        "schools": [f"{s.municipality.name} {s.name}" for s in schools],
        "grades": [str(g) for g in broadcast.grades],
        "classes": list(broadcast.classes),
    }


@staff_required
@require_GET
def broadcast(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    found = get_broadcast(_staff(request), broadcast_id)
    context: dict[str, Any] = {"broadcast": found, "scope": _scope_words(found)}
    if found.is_draft or found.is_scheduled:
        context["sample"] = _sample_mail(found)
        context["reach"] = targeting.reach(found)
        # Before sending: what a carrier group's character set would change in the text.
        context["rewritings"] = mails.rewritings(found.subject, found.body)
    else:
        context["progress"] = sending.progress(found)
        failed = Delivery.objects.filter(broadcast=found, status=DeliveryStatus.FAILED).order_by(
            "email", "pk"
        )
        context["failed_page"] = _page(request, failed)
    return _render(request, "broadcast_detail.html", context)


@staff_required
@require_POST
def broadcast_send(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_broadcast(user, broadcast_id)
    if sending.send(found, by=user):
        flash.success(request, _("Sending has started."))
    else:
        flash.info(request, _("This broadcast was already sent; it was not sent again."))
    return redirect("console:broadcast", broadcast_id=found.pk)


@staff_required
@require_POST
def broadcast_retry(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_broadcast(user, broadcast_id)
    if found.is_draft or found.is_scheduled:
        flash.info(request, _("This broadcast has not been sent yet."))
    elif count := sending.retry_failed(found, by=user):
        text = ngettext(
            "Sending again to %(count)d failed address.",
            "Sending again to %(count)d failed addresses.",
            count,
        )
        flash.success(request, text % {"count": count})
    else:
        flash.info(request, _("There are no failed addresses to send to again."))
    return redirect("console:broadcast", broadcast_id=found.pk)


@staff_required
@require_GET
def broadcast_progress(request: HttpRequest, broadcast_id: int) -> JsonResponse:
    found = get_broadcast(_staff(request), broadcast_id)
    return JsonResponse(asdict(sending.progress(found)))
