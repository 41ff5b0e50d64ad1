"""Pydantic models of a spec. Field descriptions become the JSON Schema (`rlreg schema`)."""

from registry.spec.root import SPEC_NAME_RE, STAGE_ORDER, STAGE_SECTION, Spec

__all__ = ["SPEC_NAME_RE", "STAGE_ORDER", "STAGE_SECTION", "Spec"]
