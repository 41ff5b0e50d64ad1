"""Cells = arms × grid points × seeds. A cell is (spec, overrides) plus its tags; its id is stable
(``grpo/seed=1``, ``egpo/train.optimizer.lr=1.0e-06/seed=2``) so a rerun finds what already ran."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from registry.errors import RlregError, SpecError
from registry.study.load import LoadedStudy

TAG_STUDY = "rlreg.study"
TAG_ARM = "rlreg.arm"
TAG_SEED = "rlreg.seed"
TAG_CELL = "rlreg.cell"
TAG_GRID = "rlreg.grid"
TAG_STUDY_RUN = "rlreg.study_run"
TAG_PRIMARY = "rlreg.primary_metric"


@dataclass(frozen=True)
class Cell:
    study: str
    arm: str
    spec: str
    seed: int
    grid: tuple[tuple[str, Any], ...]
    arm_overrides: tuple[str, ...]

    @property
    def id(self) -> str:
        return "/".join([self.arm, *(f"{k}={format_value(v)}" for k, v in self.grid), f"seed={self.seed}"])

    @property
    def shared_overrides(self) -> list[str]:
        """What shared stages see: the arm and grid overrides, not the seed."""
        return [*self.arm_overrides, *(f"{k}={format_value(v)}" for k, v in self.grid)]

    @property
    def overrides(self) -> list[str]:
        return [*self.shared_overrides, f"seed={self.seed}"]

    def tags(self, primary_metric: str) -> dict[str, str]:
        return {TAG_STUDY: self.study, TAG_ARM: self.arm, TAG_SEED: str(self.seed), TAG_CELL: self.id,
                TAG_GRID: json.dumps(dict(self.grid), sort_keys=True), TAG_PRIMARY: primary_metric}


def expand(loaded: LoadedStudy, only_arms: list[str] | None = None) -> list[Cell]:
    """Every cell, in file order: arm, then grid point (keys as written), then seed."""
    study = loaded.study
    if only_arms:
        unknown = [a for a in only_arms if a not in study.arms]
        if unknown:
            from registry.errors import UsageError

            raise UsageError(f"--only {','.join(unknown)}: no such arm in study '{study.name}' "
                             f"(arms: {', '.join(study.arms)})")
    keys = list(study.grid)
    points = [tuple(zip(keys, combo)) for combo in itertools.product(*(study.grid[k] for k in keys))]
    return [
        Cell(study.name, arm, a.spec, seed, point, tuple(a.overrides))
        for arm, a in study.arms.items() if not only_arms or arm in only_arms
        for point in points
        for seed in study.seeds
    ]


def format_value(v: Any) -> str:
    """A grid value as an override value that YAML parses back to the same thing."""
    if v is None:
        return "null"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(", ", ": "))  # a YAML flow collection
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return ".nan"
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        text = repr(v)
        if "e" in text and "." not in text.split("e")[0]:  # YAML 1.1 reads 1e-06 as a string
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    text = str(v)
    try:
        same = yaml.safe_load(text) == text
    except yaml.YAMLError:
        same = False
    return text if same and text.strip() == text and "/" not in text else json.dumps(text)


def load_cell(cell: Cell, loaded: LoadedStudy, *, shared: bool = False):
    """The cell's resolved spec. ``shared``: the spec its shared stages run with (the arm and grid
    overrides, no seed). A per-seed stage whose seed the top-level ``seed`` does not reach (an
    explicit ``train.seed``, or convert/sft when the study does not share them) gets its own
    ``<section>.seed=N`` override, so every per-seed stage really changes with the cell's seed."""
    from registry.spec import STAGE_SECTION

    if shared:
        return _load(cell, loaded, cell.shared_overrides)
    spec = _load(cell, loaded, cell.overrides)
    extra = []
    for stage in spec.spec.stages():
        section = getattr(spec.spec, STAGE_SECTION[stage])
        if stage in loaded.study.shared_stages or "seed" not in type(section).model_fields:
            continue
        if section.seed != cell.seed:
            extra.append(f"{STAGE_SECTION[stage]}.seed={cell.seed}")
    return _load(cell, loaded, [*cell.overrides, *extra]) if extra else spec


def _load(cell: Cell, loaded: LoadedStudy, overrides: list[str]):
    from registry.loader import load_spec

    ref = cell.spec
    base = loaded.path.parent
    if ref.endswith((".yaml", ".yml")) and not ref.startswith(("/", "~")):
        ref = str(base / ref)
    try:
        return load_spec(ref, base_dir=base, overrides=overrides)
    except SpecError as exc:
        lines = [f"{_where(loaded)}: cell {cell.id}: {line}" for line in exc.problems]
        raise SpecError("\n".join(lines), lines) from None
    except RlregError as exc:
        exc.message = f"{_where(loaded)}: cell {cell.id}: {exc.message}"
        raise


def _where(loaded: LoadedStudy) -> str:
    from registry.validation import display_path

    return display_path(loaded.path)
