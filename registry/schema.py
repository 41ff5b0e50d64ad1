"""JSON Schema of a spec, generated from the pydantic models (field descriptions included)."""

from __future__ import annotations

from typing import Any

SCHEMA_ID = "https://rl-registry.dev/spec.schema.json"


def spec_json_schema() -> dict[str, Any]:
    from registry.spec import Spec

    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rl-registry spec"
    # `name` is optional in a file (it defaults to the file stem) and `extends` makes every
    # section partial, so editors should not demand fields the loader fills in.
    schema["required"] = []
    return schema
