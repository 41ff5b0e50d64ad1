"""What a runner receives and returns. A runner is ``run(stage_spec, ctx) -> StageResult``.

Runners never import other runners; everything they need from earlier stages arrives in
``ctx.inputs`` under ``"<stage>.<output>"`` names (e.g. ``"convert.train"``, ``"sft.model"``,
``"merge.model"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from registry.spec import Spec
    from registry.tracking import Tracker


@dataclass
class StageContext:
    stage: str
    """Stage name (``convert``, ``sft``, ``train``, …)."""
    spec: "Spec"
    """The whole resolved spec, read-only: for shared sections (``model``, ``reward``)."""
    out_dir: Path
    """Empty directory for this stage's outputs. The registry moves it into the stage cache
    only after the runner returns, so a crash never leaves a half-written output behind."""
    work_dir: Path
    """Persistent per-(stage, cache key) scratch dir that survives a crash: checkpoints live here
    so a rerun of the same stage resumes instead of starting over."""
    inputs: dict[str, Path]
    """Outputs of earlier stages of this run, ``"<stage>.<name>" -> path``."""
    tracker: "Tracker"
    """Logs params/metrics/artifacts to this stage's child MLflow run (batched)."""
    project_root: Path
    """Where relative paths in the spec are resolved from."""
    resolve_ref: Callable[[str], Path] = field(default=lambda ref: Path(ref))
    """Turns a model/data reference from the spec (a path, ``$VAR`` path, or ``@spec`` /
    ``@spec:stage.output``) into a local path."""
    final_dir: Path | None = None
    """Where ``out_dir`` will live once the stage succeeds (the stage cache): for paths recorded in
    tags or references that must outlive the temporary ``out_dir``. None outside a pipeline."""

    def durable(self, path: Path) -> Path:
        """``path`` (inside ``out_dir``) at its final location in the stage cache."""
        if self.final_dir is None:
            return path.resolve()
        try:
            return self.final_dir / path.resolve().relative_to(self.out_dir.resolve())
        except ValueError:
            return path.resolve()

    def input(self, name: str) -> Path:
        """A required input; raises a clear error naming the missing stage."""
        if name not in self.inputs:
            from registry.errors import UsageError

            stage = name.split(".", 1)[0]
            raise UsageError(
                f"stage '{self.stage}' needs '{name}', which no earlier stage produced "
                f"(add the '{stage}' stage to the pipeline)"
            )
        return self.inputs[name]

    def resolve_path(self, value: str) -> Path:
        """Expand ``$VAR``/``~`` and resolve relative paths from the project root."""
        import os

        p = Path(os.path.expanduser(os.path.expandvars(value)))
        return p if p.is_absolute() else (self.project_root / p)


@dataclass
class StageResult:
    outputs: dict[str, Path] = field(default_factory=dict)
    """Named outputs (files or directories, inside ``ctx.out_dir``)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Headline metrics copied to the parent run (e.g. ``eval/accuracy_mean``)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Small JSON-able facts shown by the CLI after the stage (row counts, paths…)."""
