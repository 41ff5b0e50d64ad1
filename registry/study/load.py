"""Find and validate study files: ``rlreg study run grpo-vs-egpo`` means
``specs/study-grpo-vs-egpo.yaml`` (or ``specs/grpo-vs-egpo.yaml`` with ``kind: study``, or a path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from registry.errors import SpecError, UsageError
from registry.hashing import sha256_json
from registry.spec import SPEC_NAME_RE
from registry.study.model import StudySpec
from registry.validation import display_path, format_validation_error

PREFIX = "study-"


@dataclass
class LoadedStudy:
    study: StudySpec
    path: Path

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def hash(self) -> str:
        return sha256_json(self.study.model_dump(mode="json"))


def is_study_file(path: Path) -> bool:
    """True when the YAML file says ``kind: study`` at the top (cheap: reads only that file)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("kind") == "study"


def study_path(ref: str | Path, specs: Path | None = None) -> Path | None:
    """The study file ``ref`` names, or None when it names no study (maybe a spec)."""
    from registry.loader import specs_dir

    text = str(ref)
    if text.endswith((".yaml", ".yml")):
        path = Path(text).expanduser()
        return path.resolve() if path.is_file() and is_study_file(path) else None
    if not SPEC_NAME_RE.match(text):
        return None
    directory = specs or specs_dir()
    for candidate in (directory / f"{PREFIX}{text}.yaml", directory / f"{text}.yaml"):
        if candidate.is_file() and is_study_file(candidate):
            return candidate.resolve()
    return None


def list_studies(specs: Path | None = None) -> list[Path]:
    from registry.loader import specs_dir

    directory = specs or specs_dir()
    return sorted(p for p in directory.glob("*.yaml") if SPEC_NAME_RE.match(p.stem) and is_study_file(p))


def load_study(ref: str | Path) -> LoadedStudy:
    """Load and validate a study file; errors are ``<file>: <dotted.path>: <what> (<fix>)``."""
    path = study_path(ref)
    if path is None:
        known = [p.stem.removeprefix(PREFIX) for p in list_studies()]
        import difflib

        close = difflib.get_close_matches(str(ref), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known) or 'none'}"
        raise UsageError(f"no study named '{ref}' (a specs/study-<name>.yaml with `kind: study`; {hint})")
    from registry.loader import read_yaml

    raw = read_yaml(path)
    raw.setdefault("name", path.stem.removeprefix(PREFIX))
    from pydantic import ValidationError

    try:
        study = StudySpec.model_validate(raw)
    except ValidationError as exc:
        problems = format_validation_error(exc, path, root=StudySpec)
        raise SpecError("\n".join(problems), problems) from None
    return LoadedStudy(study=study, path=path)


def where(loaded: LoadedStudy) -> str:
    return display_path(loaded.path)


def summary(loaded: LoadedStudy) -> str:
    """``2 arms × 3 seeds = 6 cells`` (grid sizes in between when there is a grid)."""
    s = loaded.study
    n = len(s.arms) * len(s.seeds)
    grid = ""
    for key, values in s.grid.items():
        n *= len(values)
        grid += f" × {len(values)} {key}"
    return f"{len(s.arms)} arms{grid} × {len(s.seeds)} seeds = {n} cells"


def validate_study(ref: str | Path) -> LoadedStudy:
    """The study file and every cell's spec with its overrides (a typo in an arm's override is
    reported like a spec error, naming the study file and the cell)."""
    from registry.study.cells import expand
    from registry.study.state import cell_specs

    loaded = load_study(ref)
    cell_specs(loaded, expand(loaded))
    return loaded


def list_rows() -> list[dict]:
    """``rlreg list`` rows for the study files in specs/."""
    from registry.errors import RlregError

    rows = []
    for path in list_studies():
        try:
            loaded = validate_study(path)
            rows.append({"name": loaded.name, "kind": "study", "file": path.name, "extends": None, "stages": [],
                         "description": loaded.study.description, "valid": True, "cells": summary(loaded)})
        except RlregError as exc:
            rows.append({"name": path.stem, "kind": "study", "file": path.name, "extends": None, "stages": [],
                         "description": "", "valid": False, "error": str(exc).splitlines()[0]})
    return rows
