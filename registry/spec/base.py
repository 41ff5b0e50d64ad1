"""Base class for every spec section: unknown keys are errors, defaults are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    """A spec section. ``extra="forbid"`` turns a typo into an error that names the key."""

    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True)
