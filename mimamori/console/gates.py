"""Console pages for the gates (B6): a child's IC tag, the schools' gate readers, the passes
they read, and the tags they read that no child carries.

Everything is reached through the access rules (schools_for, get_registrant, readers_for), so
staff of another school get a 404 for a reader, a child or a school outside their scope.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mimamori import text
from mimamori.console.decorators import staff_required
from mimamori.console.forms import ClassFilterForm, SchoolChoiceField, class_field, grade_field
from mimamori.console.views import _page, _render, _staff
from mimamori.gates import passes, readers
from mimamori.gates.models import GatePass, PassOutcome
from mimamori.registry import tags
from mimamori.registry.access import get_registrant, get_school, registrants_for, schools_for
from mimamori.registry.models import Registrant, RegistrantStatus, School, class_key

# --- a child's tag ----------------------------------------------------------------------


class TagForm(forms.Form):
    tag_id = forms.CharField(
        label=_("IC tag ID"),
        required=False,
        max_length=80,
        validators=[text.single_line],
        help_text=_(
            "As the gate reader reads it: letters, digits and : . _ - (e.g. 0123ABCD4567EF89). "
            "Leave empty to take the tag off."
        ),
    )
    move = forms.BooleanField(required=False, widget=forms.HiddenInput)
    back = forms.ChoiceField(required=False, choices=[("", ""), ("unknown", "")], widget=forms.HiddenInput)


def _after_tag(registrant: Registrant, back: str) -> HttpResponse:
    if back == "unknown":
        return redirect(f"{reverse('console:gate_unknown_tags')}?school={registrant.school_id}")
    return redirect("console:registrant", registrant.pk)


@staff_required
@require_http_methods(["GET", "POST"])
def registrant_tag(request: HttpRequest, registrant_id: int) -> HttpResponse:
    """Give a child an IC tag, change it or take it off. A tag another child of the school
    carries is not taken silently: the page names that child and asks to move it."""
    user = _staff(request)
    registrant = get_registrant(user, registrant_id)
    if not registrant.is_active:
        raise Http404
    context: dict[str, Any] = {"registrant": registrant}
    if request.method == "GET":
        initial = {
            "tag_id": request.GET.get("tag", registrant.tag_id)[:80],
            "back": request.GET.get("back", ""),
        }
        if initial["back"] not in ("", "unknown"):
            initial["back"] = ""
        context["form"] = TagForm(initial=initial)
        return _render(request, "gate_tag.html", context)
    form = TagForm(request.POST)
    context["form"] = form
    if not form.is_valid():
        return _render(request, "gate_tag.html", context, status=400)
    data = form.cleaned_data
    try:
        tags.set_tag(registrant, data["tag_id"], by=user, move=data["move"], request=request)
    except tags.TagTaken as taken:
        # Moving a tag from one child to another is a decision: ask, naming the other child.
        context.update(
            taken=taken.holder,
            tag=taken.tag,
            move_form=TagForm(initial={"tag_id": taken.tag, "move": True, "back": data["back"]}),
        )
        return _render(request, "gate_tag.html", context, status=409)
    except forms.ValidationError as error:
        for message in error.messages:
            form.add_error("tag_id", message)
        return _render(request, "gate_tag.html", context, status=400)
    return _after_tag(registrant, data["back"])


# --- readers -----------------------------------------------------------------------------


class ReaderForm(forms.Form):
    school = SchoolChoiceField(label=_("School"), queryset=School.objects.none())
    name = forms.CharField(
        label=_("Reader name"),
        max_length=64,
        validators=[text.single_line],
        help_text=_("e.g. 正門 1"),
    )
    place = forms.CharField(
        label=_("Place"),
        max_length=64,
        required=False,
        validators=[text.single_line],
        help_text=_("Where it stands, e.g. 正門の左の柱"),
    )

    def __init__(self, *args: Any, schools: QuerySet[School], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["school"]
        assert isinstance(field, SchoolChoiceField)
        field.queryset = schools
        if schools.count() == 1:
            field.initial = schools.first()
            field.empty_label = None

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        if not name:
            raise forms.ValidationError(_("Please enter the reader's name."))
        return name


def _readers_page(request: HttpRequest, form: ReaderForm, status: int = 200) -> HttpResponse:
    user = _staff(request)
    found = readers.readers_for(user).order_by("school__municipality__code", "school__name", "name", "pk")
    school_id = request.GET.get("school", "")
    if school_id.isdigit():
        found = found.filter(school_id=int(school_id))
    return _render(request, "gate_readers.html", {"readers": found, "form": form}, status=status)


@staff_required
@require_GET
def gate_readers(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    return _readers_page(request, ReaderForm(schools=schools_for(user)))


@staff_required
@require_POST
def gate_reader_new(request: HttpRequest) -> HttpResponse:
    """Register a reader; the answer is the only page that ever shows its token."""
    user = _staff(request)
    form = ReaderForm(request.POST, schools=schools_for(user))
    if not form.is_valid():
        return _readers_page(request, form)  # shown again with its errors, as other forms are
    reader, token = readers.register(
        form.cleaned_data["school"], form.cleaned_data["name"], form.cleaned_data["place"], by=user
    )
    response = _render(request, "gate_reader_token.html", {"reader": reader, "token": token}, status=201)
    # The token must not outlive this page in a cache or the browser's history.
    response["Cache-Control"] = "no-store"
    return response


@staff_required
@require_http_methods(["GET", "POST"])
def gate_reader_revoke(request: HttpRequest, reader_id: int) -> HttpResponse:
    user = _staff(request)
    reader = readers.get_reader(user, reader_id)
    if request.method == "POST":
        readers.revoke(reader, by=user)
        return redirect("console:gate_readers")
    return _render(request, "gate_reader_revoke.html", {"reader": reader})


# --- passes ------------------------------------------------------------------------------


class PassFilterForm(ClassFilterForm):
    day = forms.DateField(label=_("Date"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    outcome = forms.ChoiceField(
        label=_("Outcome"), required=False, choices=[("", _("All")), *PassOutcome.choices]
    )
    field_order = ["school", "day", "grade", "class_name", "outcome"]


def _passes_in_scope(request: HttpRequest) -> QuerySet[GatePass]:
    # Scoped by the reader's school: an unknown tag's pass has no child to scope by.
    return GatePass.objects.filter(reader__school__in=schools_for(_staff(request)).values("pk"))


@staff_required
@require_GET
def gate_passes(request: HttpRequest) -> HttpResponse:
    """登下校の記録: the passes of one day (today by default), newest first, with what came of each."""
    user = _staff(request)
    form = PassFilterForm(request.GET, schools=schools_for(user))
    filters = form.applicable()
    day: date = filters.get("day") or timezone.localdate()
    found = _passes_in_scope(request).filter(at__date=day)
    if "school" in filters:
        found = found.filter(reader__school=filters["school"])
    if "grade" in filters:
        found = found.filter(registrant__grade=filters["grade"])
    if "class_name" in filters:
        found = found.filter(registrant__class_name=class_key(filters["class_name"]))
    counts = {row["outcome"]: row["n"] for row in found.order_by().values("outcome").annotate(n=Count("pk"))}
    if "outcome" in filters:
        found = found.filter(outcome=filters["outcome"])
    found = found.select_related("reader__school", "registrant").order_by("-at", "-pk")
    outcomes = [(value, label, counts.get(value, 0)) for value, label in PassOutcome.choices]
    return _render(
        request,
        "gate_passes.html",
        {"form": form, "day": day, "page": _page(request, found), "outcomes": outcomes},
    )


# --- unknown tags ------------------------------------------------------------------------


@staff_required
@require_GET
def gate_unknown_tags(request: HttpRequest) -> HttpResponse:
    """未登録のタグ of one school (the only one in scope, or the one chosen): unknown tags are a
    school's matter, found with gates/passes.py unknown_tags."""
    user = _staff(request)
    schools = schools_for(user).order_by("municipality__code", "name", "pk")
    wanted = request.GET.get("school", "")
    school: School | None = None
    if wanted.isdigit():
        school = get_school(user, int(wanted))
    elif len(in_scope := list(schools[:2])) == 1:
        school = in_scope[0]
    rows = passes.unknown_tags(school) if school is not None else []
    return _render(request, "gate_unknown_tags.html", {"school": school, "schools": schools, "rows": rows})


class AssignSearchForm(forms.Form):
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=64,
        validators=[text.single_line],
        help_text=_("Child's name, kana or login ID"),
    )
    grade = grade_field()
    class_name = class_field()


@staff_required
@require_GET
def gate_tag_assign(request: HttpRequest, school_id: int) -> HttpResponse:
    """Find the child an unknown tag belongs to; each row links to that child's tag page with the
    tag filled in (GET shows, the tag page's button gives it)."""
    user = _staff(request)
    school = get_school(user, school_id)
    tag = tags.normalize_tag(request.GET.get("tag", ""))
    if not tag or tags.tag_problem(tag) is not None:
        raise Http404
    form = AssignSearchForm(request.GET)
    form.is_valid()
    data = {k: v for k, v in getattr(form, "cleaned_data", {}).items() if v not in (None, "")}
    found = registrants_for(user).filter(school=school, status=RegistrantStatus.ACTIVE)
    if "q" in data:
        q = data["q"].strip()
        found = found.filter(
            Q(child_name__icontains=q) | Q(child_name_kana__icontains=q) | Q(account__username__icontains=q)
        )
    if "grade" in data:
        found = found.filter(grade=data["grade"])
    if "class_name" in data:
        found = found.filter(class_name=class_key(data["class_name"]))
    found = found.order_by("grade", "class_name", "child_name_kana", "pk")
    return _render(
        request,
        "gate_tag_assign.html",
        {"school": school, "tag": tag, "form": form, "page": _page(request, found)},
    )
