"""Alert templates (P6): the municipality's ready-made broadcasts in the token's scope."""

# No "from __future__ import annotations": ninja reads the parameter annotations at import.

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field, Router, Schema
from ninja.pagination import paginate

from mimamori.api.auth import staff_of
from mimamori.api.pagination import Pages
from mimamori.api.schemas import READ_ERRORS
from mimamori.registry import alert_templates
from mimamori.registry.models import AlertTemplate

router = Router(tags=["templates"])


class TemplateField(Schema):
    name: str = Field(description="As written in the subject or body between braces, e.g. いつ for {いつ}.")
    key: str = Field(description="A stable English key: when, where, what, request.")
    multiline: bool


class TemplateOut(Schema):
    id: int
    municipality: str = Field(description="The municipality's code.")
    name: str
    subject: str = Field(description="May hold fields in braces, e.g. {どこで}.")
    body: str = Field(description="May hold fields in braces, e.g. {いつ}.")
    fields: list[TemplateField] = Field(description="The fields the subject and body use.")
    urgent: bool
    request_confirmation: bool
    answers: list[str] = Field(
        description="Answer choices (安否確認) a broadcast made from it offers, e.g. "
        '["無事です", "けがをしています", "支援が必要です"]; [] for none. Pass them as `answers` '
        "to POST /broadcasts."
    )

    @staticmethod
    def resolve_municipality(obj: AlertTemplate) -> str:
        return obj.municipality.code

    @staticmethod
    def resolve_fields(obj: AlertTemplate) -> list[TemplateField]:
        return [
            TemplateField(name=f.placeholder, key=f.key, multiline=f.multiline)
            for f in alert_templates.fields_of(obj)
        ]


@router.get("/templates", response={200: list[TemplateOut], **READ_ERRORS})
@paginate(Pages)
def list_templates(request: HttpRequest) -> QuerySet[AlertTemplate]:
    """The alert templates of the token's municipalities (the centre: all), by city and name."""
    return alert_templates.templates_for(staff_of(request)).order_by("municipality__code", "name", "pk")
