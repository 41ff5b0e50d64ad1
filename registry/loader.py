"""Find, read and resolve spec files: name → path, YAML safe-load, ``extends`` deep-merge.

Rules (enforced before any validation):
- ``spec=verl8`` means ``specs/verl8.yaml``; a path ending in .yaml/.yml also works. A name must
  match ``[A-Za-z0-9][A-Za-z0-9._-]*`` and is checked before any file is opened, so ``../x``
  cannot escape ``specs/``.
- ``extends: parent`` deep-merges the child over the parent: mappings merge, lists and scalars
  replace, an explicit ``null`` clears a section. Chains are allowed; cycles are reported with the
  chain. ``name`` is never inherited: it is the child's own ``name`` or its file stem. The parent
  is looked up next to the file first, then in the project's ``specs/``.
- Command-line overrides (``key=value``, ``~key``) apply to the merged mapping, before validation.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from registry import yamlsafe
from registry.errors import SpecError, UsageError
from registry.spec import SPEC_NAME_RE, Spec
from registry.validation import display_path, format_validation_error

MAX_EXTENDS_DEPTH = 32


def project_root() -> Path:
    """The directory holding ``specs/``: $RLREG_PROJECT_ROOT, else the cwd, else this checkout."""
    env = os.environ.get("RLREG_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd()
    if (cwd / "specs").is_dir():
        return cwd
    return Path(__file__).resolve().parents[1]


def specs_dir() -> Path:
    return Path(os.environ.get("RLREG_SPECS_DIR") or project_root() / "specs").resolve()


def spec_path(ref: str, base_dir: Path | None = None) -> Path:
    """Turn a spec reference (name or .yaml path) into a file path, refusing unsafe names."""
    if ref.endswith((".yaml", ".yml")):
        path = Path(ref).expanduser()
        if not path.is_file():
            what = "is not a regular file" if path.exists() else "does not exist"
            raise UsageError(f"spec file '{ref}' {what}")
        return path.resolve()
    if not SPEC_NAME_RE.match(ref):
        raise UsageError(
            f"'{ref}' is not a valid spec name: names match [A-Za-z0-9][A-Za-z0-9._-]* "
            "(use a name from `rlreg list`, or a path ending in .yaml)"
        )
    directory = base_dir or specs_dir()
    path = directory / f"{ref}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        import difflib

        close = difflib.get_close_matches(ref, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known) or 'none'})"
        raise UsageError(f"no spec named '{ref}' in {display_path(directory)}{hint}")
    return path


def read_yaml(path: Path) -> dict[str, Any]:
    where = display_path(path)
    wrong = yamlsafe.check_regular_file(path)  # before opening: a FIFO would block the read
    if wrong:
        raise SpecError(f"{where}: {wrong}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{where}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise SpecError(f"{where}: cannot read ({exc.strerror})") from None
    try:
        data = yamlsafe.load(text)  # bounded: alias expansion, duplicate keys, huge integers
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fix = "" if problem.endswith(")") else " (fix the syntax)"  # bounded-loader messages carry their own
        raise SpecError(f"{where}: invalid YAML{pos}: {problem}{fix}") from None
    except RecursionError:
        raise SpecError(f"{where}: YAML nested too deeply (flatten the structure)") from None
    if data is None:
        raise SpecError(f"{where}: the file is empty (a spec is a mapping with at least `data` or another section)")
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a spec must be a YAML mapping, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SpecError(f"{where}: top-level keys must be strings, got {bad[0]!r}")
    return data


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge recursively; anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


@dataclass
class LoadedSpec:
    spec: Spec
    path: Path
    chain: list[Path]
    """This file first, then each parent it extends."""
    raw: dict[str, Any]
    """The merged mapping before validation."""
    parent_raw: dict[str, Any] | None = None
    """The resolved parent mapping (for 'what does this spec override')."""
    origins: dict[str, Any] = field(default_factory=dict)
    """Dotted key → the file (Path) or override (str) that set it."""
    overrides: list[str] = field(default_factory=list)
    """Command-line overrides as typed, applied after ``extends`` (already in ``raw`` and ``spec``)."""
    base_raw: dict[str, Any] | None = None
    """The merged mapping before the overrides (None without overrides)."""

    @property
    def name(self) -> str:
        return self.spec.name


def _resolve_raw(path: Path, seen: list[Path]) -> tuple[dict[str, Any], list[Path], dict[str, Path], dict | None]:
    if path in seen:
        cycle = " -> ".join(p.stem for p in [*seen, path])
        raise SpecError(f"{display_path(seen[0])}: extends: cycle {cycle} (remove one of the `extends`)")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise SpecError(f"{display_path(seen[0])}: extends: chain deeper than {MAX_EXTENDS_DEPTH} specs")
    data = read_yaml(path)
    own = dict(data)
    own.setdefault("name", path.stem)
    parent_ref = data.get("extends")
    if parent_ref is None:
        return own, [path], {k: path for k in _leaf_keys(own)}, None
    where = display_path(path)
    if not isinstance(parent_ref, str):
        raise SpecError(f"{where}: extends: must be a spec name, got {parent_ref!r} "
                        "(write the name of another spec, e.g. extends: demo-grpo)")
    if not SPEC_NAME_RE.match(parent_ref):
        raise SpecError(
            f"{where}: extends: '{parent_ref}' is not a valid spec name "
            "(use the name of a file in the same specs/ directory, without .yaml)"
        )
    parent_path = _find_parent(path, parent_ref)
    parent, chain, origins, _ = _resolve_raw(parent_path, [*seen, path])
    parent.pop("name", None)  # never inherited
    merged = deep_merge(parent, own)
    origins = {**origins, **{k: path for k in _leaf_keys(own)}}
    return merged, [path, *chain], origins, {**parent, "name": own["name"]}


def _find_parent(path: Path, parent_ref: str) -> Path:
    """``extends: NAME`` → NAME.yaml next to the file, else in the project's specs/ (so a scratch
    file or a study arm outside specs/ can extend a shipped spec)."""
    candidates = [path.parent / f"{parent_ref}.yaml"]
    project = specs_dir() / f"{parent_ref}.yaml"
    if project not in candidates:
        candidates.append(project)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = display_path(path)
    looked = " or ".join(display_path(c.parent) for c in candidates)
    known = sorted({p.stem for c in candidates for p in c.parent.glob("*.yaml")} - {path.stem})
    import difflib

    close = difflib.get_close_matches(parent_ref, known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known) or 'none'}"
    raise SpecError(f"{where}: extends: no spec named '{parent_ref}' next to it or in specs/ (looked in {looked}; {hint})")


def _leaf_keys(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, dict) and obj:
        out: list[str] = []
        for k, v in obj.items():
            out += _leaf_keys(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [prefix] if prefix else []


def load_spec(ref: str | Path, base_dir: Path | None = None, overrides: Sequence[str] = ()) -> LoadedSpec:
    """Load, resolve ``extends``, apply command-line ``overrides`` (``key=value`` / ``~key``, see
    registry/overrides.py) and validate. Raises SpecError/UsageError with clear messages."""
    from registry.overrides import apply_overrides, parse_overrides

    if isinstance(overrides, str):  # one string would silently become one override per character
        raise TypeError("overrides must be a sequence of strings, not a string")
    parsed = parse_overrides(overrides)
    path = spec_path(str(ref), base_dir) if not isinstance(ref, Path) else ref.resolve()
    raw, chain, origins, parent_raw = _resolve_raw(path, [])
    base_raw = None
    if parsed:
        base_raw = raw
        raw, origins = apply_overrides(raw, parsed, origins)
    try:
        spec = Spec.model_validate(raw)
    except Exception as exc:  # pydantic.ValidationError
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        problems = format_validation_error(exc, path, origins)
        raise SpecError("\n".join(problems), problems) from None
    return LoadedSpec(spec=spec, path=path, chain=chain, raw=raw, parent_raw=parent_raw, origins=origins,
                      overrides=list(overrides), base_raw=base_raw)


def list_specs(base_dir: Path | None = None) -> list[Path]:
    directory = base_dir or specs_dir()
    from registry.study.load import is_study_file  # studies (kind: study) live in specs/ too

    return sorted(p for p in directory.glob("*.yaml") if SPEC_NAME_RE.match(p.stem) and not is_study_file(p))
