"""Templates: admin-defined starting points for environments (image, CPUs, memory, idle
timeout, extensions, repository, git logins, environment variables). A template's values
are the defaults of an environment created from it; a user may give another value only
for the fields the template lists as ``editable``. Admins write them; everyone reads them."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dev8.core import audit
from dev8.core.admin import require_admin
from dev8.core.environments import build_options, check_cpus, check_idle_timeout, check_image, parse_memory
from dev8.core.errors import Invalid, NotFound
from dev8.names import check_env_name
from dev8.store.models import Template, User, utcnow

# What a template may set, each a create request's field of the same name.
FIELDS = ("image", "cpus", "memory", "idle_timeout", "repo", "branch", "git", "extensions", "env")
EMPTY: dict[str, object] = {"git": [], "extensions": [], "env": {}}


def _given(value: object) -> bool:
    """A value set (not None, not empty)."""
    return value not in (None, [], {}, "")


def check_spec(spec: dict, editable: list[str]) -> dict:
    """The template's values, validated as a create request's would be (pure)."""
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise Invalid(f"a template cannot set {unknown[0]!r} ({', '.join(FIELDS)})", field=unknown[0])
    bad = sorted(set(editable) - set(FIELDS))
    if bad:
        raise Invalid(f"{bad[0]!r} is not a field users could change ({', '.join(FIELDS)})", field="editable")
    clean = {k: v for k, v in spec.items() if _given(v)}
    if "image" in clean:
        check_image(str(clean["image"]).strip())
    if "cpus" in clean:
        check_cpus(float(clean["cpus"]))
    if "memory" in clean:
        parse_memory(str(clean["memory"]))
    if "idle_timeout" in clean:
        check_idle_timeout(int(clean["idle_timeout"]))
    build_options(repo=clean.get("repo"), branch=clean.get("branch"), git=clean.get("git"),
                  extensions=clean.get("extensions"), env=clean.get("env"))
    return clean


def save_template(s: Session, admin: User, name: str, *, description: str, spec: dict,
                  editable: list[str]) -> Template:
    """Create or replace template ``name``."""
    require_admin(admin)
    try:
        check_env_name(name)
    except ValueError as exc:
        raise Invalid(str(exc).replace("environment", "template"), field="name") from None
    if len(description) > 500:
        raise Invalid("description: at most 500 characters", field="description")
    clean = check_spec(spec, editable)
    row = s.scalar(select(Template).where(Template.name == name)) or Template(name=name)
    row.description, row.spec, row.editable, row.updated_at = description, clean, sorted(set(editable)), utcnow()
    s.add(row)
    s.flush()
    audit.record(s, admin, "admin.template.save", name, ", ".join(f"{k}" for k in clean) or "no values")
    return row


def delete_template(s: Session, admin: User, name: str) -> None:
    require_admin(admin)
    s.delete(get_template(s, name))
    audit.record(s, admin, "admin.template.delete", name)


def get_template(s: Session, name: str) -> Template:
    row = s.scalar(select(Template).where(Template.name == name))
    if row is None:
        raise NotFound(f"no template {name!r} (dev8 templates list)")
    return row


def list_templates(s: Session) -> list[Template]:
    return list(s.scalars(select(Template).order_by(Template.name)))


def resolve(s: Session, name: str, given: dict[str, object]) -> dict[str, object]:
    """A create request's values (``given``; None or empty: not given) over template
    ``name``'s: Invalid for a value the template does not let users change."""
    try:
        template = get_template(s, name)
    except NotFound as exc:
        raise Invalid(str(exc), field="template") from None
    out: dict[str, object] = {}
    for field in FIELDS:
        value = given.get(field)
        mine = _given(value)
        if mine and field in template.spec and field not in template.editable and value != template.spec[field]:
            raise Invalid(f"template {name} sets {field} and does not let it be changed", field=field)
        out[field] = value if mine else template.spec.get(field, EMPTY.get(field))
    return out
