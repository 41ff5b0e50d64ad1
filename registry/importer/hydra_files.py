"""Read a hardtry-style experiment directory without verl: its files, the Hydra entry config and
the keys the user's own YAML files set (their defaults list merged in order, verl's ppo_trainer
left out)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from registry.errors import UsageError

VERL_BASE = "ppo_trainer"
CONFIG_DIRS = ("configs", "conf")


@dataclass
class ExperimentDir:
    root: Path
    config_dir: Path
    entry: str
    """Config name of the Hydra entry (``grpo_config``): the file whose defaults list holds ppo_trainer."""
    user: dict[str, Any]
    """What the user's files set, merged in defaults order (``_self_`` where it is listed)."""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every other YAML in the config dir by stem (convert, eval, vLLM configs)."""
    scripts: dict[str, str] = field(default_factory=dict)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: not readable ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:  # one line: where and what (PyYAML's message spans several)
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}: {where}not readable YAML: {what} (fix the file)") from exc


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and empty dicts are leaves."""
    if not isinstance(tree, dict) or (not tree and prefix):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def _defaults(doc: dict) -> list[str]:
    names = []
    for item in doc.get("defaults") or []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and len(item) == 1:  # `- group: option` -> group/option
            ((group, option),) = item.items()
            names.append(f"{group}/{option}")
    return names


def _merge_entry(config_dir: Path, name: str, seen: tuple[str, ...] = ()) -> dict:
    if name in seen:
        raise UsageError(f"{config_dir}: the Hydra defaults of {name!r} include themselves")
    path = config_dir / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"{config_dir}: the defaults list names {name!r}, but {path.name} is not there")
    doc = _load_yaml(path) or {}
    own = {k: v for k, v in doc.items() if k != "defaults"}
    defaults = _defaults(doc) or ["_self_"]
    if "_self_" not in defaults:
        defaults.append("_self_")  # Hydra 1.1+: _self_ last when not listed
    merged: dict = {}
    for item in defaults:
        if item == "_self_":
            merged = deep_merge(merged, own)
        elif item != VERL_BASE:
            merged = deep_merge(merged, _merge_entry(config_dir, item, seen + (name,)))
    return merged


def _script_config_name(scripts: dict[str, str]) -> str | None:
    for text in scripts.values():
        m = re.search(r"""CONFIG_NAME=["']?([\w.-]+)""", text) or re.search(r"--config-name[= ]['\"]?([\w.-]+)", text)
        if m and "$" not in m.group(1):
            return m.group(1)
    return None


def read_experiment(root: Path) -> ExperimentDir:
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory (give an experiment directory such as exps/verl7)")
    config_dir = next((root / d for d in CONFIG_DIRS if (root / d).is_dir()), None)
    if config_dir is None:
        raise UsageError(f"{root}: no configs/ (or conf/) directory with the experiment's YAML files")
    scripts = {str(p.relative_to(root)): p.read_text(encoding="utf-8", errors="replace")
               for p in sorted(root.rglob("*.sh"))}
    docs = {p.stem: _load_yaml(p) for p in sorted(config_dir.glob("*.yaml"))}
    entries = [stem for stem, doc in docs.items() if isinstance(doc, dict) and VERL_BASE in _defaults(doc)]
    named = _script_config_name(scripts)
    if named in entries:
        entry = named
    elif len(entries) == 1:
        entry = entries[0]
    else:
        raise UsageError(
            f"{config_dir}: expected one Hydra entry config whose defaults list `{VERL_BASE}`, found "
            f"{entries or 'none'} (name it in scripts/train_local.sh as CONFIG_NAME=...)")
    used = {entry} | _included(config_dir, entry)
    files = {stem: doc for stem, doc in docs.items() if stem not in used and isinstance(doc, dict)}
    return ExperimentDir(root, config_dir, entry, _merge_entry(config_dir, entry), files, scripts)


def _included(config_dir: Path, name: str) -> set[str]:
    doc = _load_yaml(config_dir / f"{name}.yaml") or {}
    out: set[str] = set()
    for item in _defaults(doc):
        if item not in ("_self_", VERL_BASE) and (config_dir / f"{item}.yaml").is_file():
            out |= {item} | _included(config_dir, item)
    return out


def script_assignment(scripts: dict[str, str], variable: str) -> str | None:
    """The literal value of ``VARIABLE="..."`` in the experiment's shell scripts (first found)."""
    for text in scripts.values():
        m = re.search(rf"""^\s*{variable}=["']?([^"'\s]+)""", text, re.MULTILINE)
        if m:
            return m.group(1)
    return None
