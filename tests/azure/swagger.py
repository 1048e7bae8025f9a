"""Strict validation of request bodies against Microsoft's published REST specifications
(Swagger 2.0, stored under tests/data/azure with their source).

No library rejects unknown properties in Swagger out of the box. Each definition is turned
into a JSON Schema (draft 4): ``allOf`` merged into the schema's own properties and
required list, ``additionalProperties: false`` on every object that lists its properties
(unless it says otherwise), and, for requests, read-only properties forbidden. jsonschema
then rejects unknown, read-only and missing required properties and wrong types.
"""
from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

DATA = Path(__file__).parents[1] / "data" / "azure"


class SpecViolation(ValueError):
    """A body the specification does not allow; the message says where and why."""


@cache
def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def _ref_name(ref: str) -> str:
    assert ref.startswith("#/definitions/"), ref
    return ref.removeprefix("#/definitions/")


def _convert(schema: Any, definitions: dict[str, Any], request: bool) -> Any:
    if isinstance(schema, list):
        return [_convert(s, definitions, request) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if request and schema.get("readOnly") is True:
        return False  # a read-only property in a request body is an error
    out = {k: v for k, v in schema.items() if not k.startswith("x-ms-") and k not in ("readOnly", "description")}
    if "allOf" in out:  # merge the parts: their properties and required lists become ours
        merged_props: dict[str, Any] = {}
        merged_required: list[str] = []
        for part in out.pop("allOf"):
            resolved = definitions[_ref_name(part["$ref"])] if "$ref" in part else part
            merged_props.update(resolved.get("properties", {}))
            merged_required += resolved.get("required", [])
        merged_props.update(out.get("properties", {}))
        out["properties"] = merged_props
        out["required"] = sorted(set(merged_required + out.get("required", [])))
        out.setdefault("type", "object")
        if not out["required"]:
            del out["required"]
    if "properties" in out:
        out["properties"] = {k: _convert(v, definitions, request) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _convert(out[key], definitions, request)
    if "format" in out and out["format"] in ("int32", "int64", "double", "float"):
        del out["format"]  # draft 4 knows no such formats; the type says enough
    return out


@cache
def _schema(spec_name: str, definition: str, request: bool) -> dict[str, Any]:
    definitions = copy.deepcopy(load(spec_name)["definitions"])
    converted = {name: _convert(d, definitions, request) for name, d in definitions.items()}
    return {"definitions": converted, "allOf": [{"$ref": f"#/definitions/{definition}"}]}


def validate(spec_name: str, definition: str, body: Any, *, request: bool = True) -> None:
    """Raise SpecViolation unless ``body`` is a valid ``definition`` of ``spec_name``."""
    validator = jsonschema.Draft4Validator(_schema(spec_name, definition, request))
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise SpecViolation("; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in errors[:5]))
