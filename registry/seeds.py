"""What the spec's top-level ``seed`` reaches, stage by stage (docs/seeds.md has the table).

A study runs each arm with several seeds and shares convert and SFT across them, so the top-level
``seed`` fills in only the per-seed stages' own seed fields, and only where the spec leaves them
unset (an explicit ``train.seed``/``eval.seed`` wins):

- ``train.seed``: rollout sampling, prompt order, verl's data/rollout seeds;
- ``eval.seed``: the base of the repeats' sampling seeds (repeat r uses seed + r).

This happens at validation, so the resolved spec (``rlreg show --resolved``, ``spec.yaml``) shows
the seed each stage uses, and each stage's cache key — which hashes its section — changes with it.
merge follows train through its input digest. convert (``data.seed``), sft (``sft.seed``), the tiny
base model (``model.tiny.seed``), entropy and generate keep their own seeds: set those keys (an
override or a study grid) to vary them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.spec import Spec

FOLLOWS_SPEC_SEED: tuple[str, ...] = ("train", "eval")
"""Sections whose ``seed`` defaults to the spec's top-level ``seed``."""

SEED_KEYS: dict[str, str] = {
    "convert": "data.seed",
    "sft": "sft.seed",
    "train": "train.seed",
    "eval": "eval.seed",
    "entropy": "entropy.seed",
    "generate": "generate.seed",
}
"""The spec key holding each stage's seed (the tiny base model's init: ``model.tiny.seed``)."""


def fill_stage_seeds(spec: "Spec") -> None:
    """Give every section in FOLLOWS_SPEC_SEED that does not set ``seed`` the spec's ``seed``."""
    for section_name in FOLLOWS_SPEC_SEED:
        section = getattr(spec, section_name)
        if section is not None and "seed" not in section.model_fields_set:
            section.seed = spec.seed



def pinned_stage_seeds(raw: dict) -> dict[str, object]:
    """Sections in FOLLOWS_SPEC_SEED whose ``seed`` the (merged, overridden) mapping sets itself:
    the top-level ``seed`` does not reach them, so varying it does not vary that stage."""
    out = {}
    for section_name in FOLLOWS_SPEC_SEED:
        section = raw.get(section_name)
        if isinstance(section, dict) and "seed" in section:
            out[section_name] = section["seed"]
    return out
