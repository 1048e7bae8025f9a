"""Templates: every user lists and reads them; admins write them (403 otherwise)."""
from __future__ import annotations

from fastapi import APIRouter, status

from dev8.core import templates
from dev8.server.deps import CurrentUser, SessionDep, StoreRoute
from dev8.server.schemas import ERROR_RESPONSES, TemplateIn, TemplateOut
from dev8.store.models import Template

router = APIRouter(prefix="/api/v1/templates", tags=["templates"], responses=ERROR_RESPONSES, route_class=StoreRoute)


def template_out(t: Template) -> TemplateOut:
    return TemplateOut(name=t.name, description=t.description, editable=list(t.editable or []), **(t.spec or {}))


@router.get("", response_model=list[TemplateOut])
def list_templates(_user: CurrentUser, s: SessionDep) -> list[TemplateOut]:
    return [template_out(t) for t in templates.list_templates(s)]


@router.get("/{name}", response_model=TemplateOut)
def get_template(name: str, _user: CurrentUser, s: SessionDep) -> TemplateOut:
    return template_out(templates.get_template(s, name))


@router.put("/{name}", response_model=TemplateOut, summary="Create or replace a template (admins)")
def save_template(name: str, body: TemplateIn, user: CurrentUser, s: SessionDep) -> TemplateOut:
    spec = body.model_dump(exclude={"description", "editable"})
    spec["git"] = [{k: v for k, v in g.items() if v is not None} for g in spec["git"]]
    return template_out(templates.save_template(s, user, name, description=body.description, spec=spec,
                                                editable=body.editable))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a template (admins)")
def delete_template(name: str, user: CurrentUser, s: SessionDep) -> None:
    templates.delete_template(s, user, name)
