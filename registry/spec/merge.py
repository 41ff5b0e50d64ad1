"""``merge``: turn the final policy into a standard HF model directory and log it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry.spec.base import MAX_STEPS, SpecModel


class MergeSpec(SpecModel):
    step: int | None = Field(None, le=MAX_STEPS, ge=1, description="Checkpoint step to merge; null = the newest.")
    log_mode: Literal["auto", "reference", "copy"] = Field(
        "auto",
        description="How the model reaches MLflow: `reference` logs a sha256 manifest + path, `copy` "
        "uploads the files, `auto` copies models under 200 MB and references larger ones.",
    )
    register_model: bool = Field(
        True, description="Register the logged model in the MLflow model registry (a new version per merge run)."
    )
    registered_name: str | None = Field(
        None, description="Registry name; default `<experiment>-policy` (one registered model per MLflow experiment)."
    )
    alias: str | None = Field(
        "candidate", description="Registry alias moved to the new version (`rlreg promote RUN --alias champion` "
        "moves another); null = none.",
    )
