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
