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
from django.db.models.functions import Coalesce
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from mimamori.accounts.models import User
from mimamori.broadcasts import mails, preview, sending, targeting
from mimamori.broadcasts.access import broadcasts_for, get_broadcast
from mimamori.broadcasts.models import OPEN, Broadcast, Delivery, DeliveryStatus
from mimamori.console.broadcast_forms import CLASS_SEPARATORS, BroadcastForm, TargetForm
from mimamori.console.decorators import staff_required
from mimamori.console.views import _page, _render, _staff
from mimamori.registry import answers as answer_rules


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


def _initial(query: QueryDict) -> dict[str, Any]:
    """Compose's starting values from the address (an alert template's link):
    subject, body, urgent, request_confirmation, answers (one parameter per choice)."""
    initial: dict[str, Any] = {}
    if answers := query.getlist("answers"):
        initial["answers"] = answers[: answer_rules.MAX_CHOICES]
    for name in ("subject", "body"):
        if name in query:
            initial[name] = query[name]
    for name in ("urgent", "request_confirmation"):
        if name in query:
            initial[name] = str(query[name]).lower() not in ("", "0", "false", "off", "no")
    return initial


def _scope(user: User, data: dict[str, Any]) -> targeting.Scope:
    return targeting.resolve_scope(
        user,
        municipality_codes=data["municipalities"],
        school_ids=data["schools"],
        grades=data["scope_grades"],
        classes=data["scope_classes"],
        groups=data["scope_groups"],
    )


def _compose_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": data["subject"],
        "body": data["body"],
        "urgent": data["urgent"],
        "request_confirmation": data.get("request_confirmation", False),
        "reminder_minutes": data.get("reminder_minutes", ()),
        "answers": data.get("answers", ()),
    }


def _with_safety_answers(request: HttpRequest) -> QueryDict | None:
    """The posted form with the answers set to 無事です／けがをしています／支援が必要です, when
    staff pressed the shortcut (without JavaScript; with it, compose.js fills the inputs)."""
    if "fill_safety" not in request.POST:
        return None
    data = request.POST.copy()
    data.setlist("answers", list(answer_rules.SAFETY))
    return data


def _filled(form: BroadcastForm) -> BroadcastForm:
    """A form drawn again with what was posted, not checked yet (nothing is saved)."""
    form._errors = ErrorDict()  # type: ignore[attr-defined]
    return form


@staff_required
def broadcast_new(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    if request.method == "POST" and (filled := _with_safety_answers(request)) is not None:
        return _render(request, "broadcast_new.html", {"form": _filled(BroadcastForm(filled, user=user))})
    if request.method == "POST":
        form = BroadcastForm(request.POST, user=user)
    else:
        form = BroadcastForm(user=user, initial=_initial(request.GET))
        # An old link's grades and classes (classes folded: 1組, １組 and 1 are class 1).
        grades = [int(g) for g in request.GET.getlist("grades") if g.isdigit() and len(g) < 3]
        classes = [c for value in request.GET.getlist("classes") for c in CLASS_SEPARATORS.split(value) if c]
        form.initial.update(form.picked(grades, classes))
    if form.is_valid():
        try:
            broadcast = sending.compose(
                user, scope=_scope(user, form.cleaned_data), **_compose_fields(form.cleaned_data)
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            return redirect("console:broadcast", broadcast_id=broadcast.pk)
    return _render(request, "broadcast_new.html", {"form": form})


@staff_required
def broadcast_edit(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    """The compose form for a draft, filled in; saving changes the draft (no second draft)."""
    user = _staff(request)
    found = get_broadcast(user, broadcast_id)
    if not found.is_draft:
        flash.info(request, _("This broadcast was already sent; it can no longer be changed."))
        return redirect("console:broadcast", broadcast_id=found.pk)
    if request.method == "POST" and (filled := _with_safety_answers(request)) is not None:
        form = _filled(BroadcastForm(filled, user=user))
        return _render(request, "broadcast_new.html", {"form": form, "draft": found})
    if request.method == "POST":
        form = BroadcastForm(request.POST, user=user)
    else:
        form = BroadcastForm(user=user)
        form.initial = {
            "answers": list(found.answers),
            "subject": found.subject,
            "body": found.body,
            "urgent": found.urgent,
            "request_confirmation": found.request_confirmation,
            "reminder_minutes": list(found.reminder_minutes),
            **form.initial_from(found),
        }
    if form.is_valid():
        try:
            changed = sending.revise(
                found, scope=_scope(user, form.cleaned_data), **_compose_fields(form.cleaned_data)
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if not changed:
                flash.info(request, _("This broadcast was already sent; it can no longer be changed."))
            return redirect("console:broadcast", broadcast_id=found.pk)
    return _render(request, "broadcast_new.html", {"form": form, "draft": found})


@staff_required
@require_POST
def broadcast_delete(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_broadcast(user, broadcast_id)
    if sending.discard(found, by=user):
        flash.success(request, _("The draft was deleted."))
        return redirect("console:broadcasts")
    flash.info(request, _("This broadcast was already sent; it cannot be deleted."))
    return redirect("console:broadcast", broadcast_id=found.pk)


@staff_required
@require_GET
def broadcast_reach(request: HttpRequest) -> JsonResponse:
    """The live count of the compose page: whom the chosen scope reaches now (「N 家庭・M 通」)."""
    user = _staff(request)
    form = TargetForm(request.GET, user=user)
    if form.is_valid():
        try:
            reach = targeting.scope_reach(_scope(user, form.cleaned_data))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            return JsonResponse(
                {
                    "registrants": reach.registrants,
                    "messages": reach.messages,
                    "text": reach_words(reach.registrants, reach.messages),
                }
            )
    problems = [str(m) for messages in form.errors.values() for m in messages]
    return JsonResponse({"errors": problems})


def reach_words(registrants: int, messages: int) -> str:
    """「N 家庭・M 通」: registrants reached, and mails (one per distinct address)."""
    return _("%(registrants)d households, %(messages)d mails") % {
        "registrants": registrants,
        "messages": messages,
    }


def _scope_words(broadcast: Broadcast) -> dict[str, list[str]]:
    schools = list(broadcast.schools.select_related("municipality"))
    return {
        "municipalities": [m.name for m in broadcast.municipalities.all()],
        "schools": [f"{s.municipality.name} {s.name}" for s in schools],
        "grades": [str(g) for g in broadcast.grades],
        "classes": list(broadcast.classes),
        "groups": group_words(broadcast),
    }


def group_words(broadcast: Broadcast) -> list[str]:
    """Whole grades and classes of a grade, grade by grade: 「3年2組」「5年1組」「6年全体」;
    empty for a broadcast without classes of a grade (grades × classes)."""
    pairs = targeting.groups_of(broadcast)
    if not pairs:
        return []
    named = [(g, "", _("Grade %(grade)d, all classes") % {"grade": g}) for g in broadcast.grades]
    named += [(g, c, _("%(grade)d-%(name)s") % {"grade": g, "name": c}) for g, c in pairs]
    return [words for _g, _c, words in sorted(named, key=_group_order)]


def _group_order(item: tuple[int, str, str]) -> tuple[int, int, str]:
    grade, name, _words = item
    # A whole grade, then numbered classes in number order (2 before 10), then named ones.
    return (grade, -1 if not name else int(name) if name.isdigit() else 10**6, name)


@staff_required
@require_GET
def broadcast(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    found = get_broadcast(_staff(request), broadcast_id)
    context: dict[str, Any] = {"broadcast": found, "scope": _scope_words(found)}
    if found.is_draft or found.is_scheduled:
        context["sample"] = preview.sample(found)
        reach = targeting.reach(found)
        context["reach"] = reach
        context["reach_words"] = reach_words(reach.registrants, reach.messages)
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
    try:
        started = sending.send(found, by=user)
    except sending.NoRecipients as refusal:
        flash.error(request, refusal.messages[0])
        return redirect("console:broadcast", broadcast_id=found.pk)
    if started:
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
