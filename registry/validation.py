"""Turn pydantic's ValidationError into one line per problem:

    specs/x.yaml: train.algorithm.adv_estimtor: unknown field (did you mean adv_estimator?)

file, dotted path, what is wrong, the fix. For keys inherited through ``extends`` the file that
set the key is named too; a key set by a command-line override names the override instead of the
file (``override 'train.algorithm.egpo_lambd=0.2': train.algorithm.egpo_lambd: unknown field …``).
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


def format_validation_error(exc: ValidationError, path: Path, origins: dict[str, Path] | None = None,
                            root: type[BaseModel] | None = None) -> list[str]:
    """``root``: the model validated (default: a spec; a study file passes its own model)."""
    from registry.spec import Spec

    root = root or Spec
    where = display_path(path)
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        dotted = ".".join(str(p) for p in loc)
        what = _describe(err, loc, root)
        origin = _origin(dotted, origins or {}, path)
        if isinstance(origin, str):  # an override (registry.overrides.OverrideSource) is the source
            if err.get("type") == "string_type":  # `tags.run=1` parsed as YAML gives an int
                what += " (quote the value for a string, e.g. key=\"'1'\")"
            lines.append(f"{origin}: {dotted}: {what}" if dotted else f"{origin}: {what}")
            continue
        prefix = f"{where}: {dotted}: " if dotted else f"{where}: "
        lines.append(prefix + what + (f" [set in {display_path(origin)}]" if origin else "")
                     + ("" if dotted else _root_overrides(origins or {})))
    # pydantic reports a model-level error once per failing validator; keep order, drop repeats
    return list(dict.fromkeys(lines))


def display_path(path: Path) -> str:
    """Relative to the cwd when the file is below it, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _origin(dotted: str, origins: dict[str, Any], path: Path) -> Path | str | None:
    """The file (a Path) or override (a str) that set the key an error is about. An override wins
    when the error is at or below the key it set, or on a section holding that key."""
    for key, src in reversed(list(origins.items())):
        if isinstance(src, str) and dotted and (
            key == dotted or dotted.startswith(key + ".") or key.startswith(dotted + ".")
        ):
            return src
    for key, src in origins.items():
        if isinstance(src, str):
            continue
        if (key == dotted or key.startswith(dotted + ".")) and dotted and src != path:
            return src
    return None


def _root_overrides(origins: dict[str, Any]) -> str:
    """A whole-spec error under overrides: list them, they may be why."""
    sources = list(dict.fromkeys(src for src in origins.values() if isinstance(src, str)))
    return f" [with {', '.join(sources)}]" if sources else ""


def _describe(err: dict[str, Any], loc: tuple, root: type[BaseModel]) -> str:
    kind = err.get("type", "")
    value = err.get("input")
    msg = err.get("msg", "")
    if kind == "extra_forbidden":
        allowed = _fields_at(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        if close:
            return f"unknown field (did you mean {close[0]}?)"
        return f"unknown field (allowed here: {', '.join(allowed)})" if allowed else "unknown field (remove it)"
    if kind == "missing":
        return "required field missing (add it)"
    if kind == "literal_error":
        expected = msg.split("Input should be ", 1)[-1]
        close = ""
        if isinstance(value, str):
            options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",")]
            m = difflib.get_close_matches(value, options, n=1)
            close = f" (did you mean '{m[0]}'?)" if m else ""
        return f"{_short(value)} is not allowed; use {expected}{close}"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "model_type" or kind == "dict_type":
        return f"{msg.lower()}, got {_short(value)} ({type(value).__name__})"
    return f"{msg} (got {_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model found by following ``loc`` from the root spec model."""
    current: Any = model
    for part in loc:
        current = _unwrap_model(current)
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    current = _unwrap_model(current)
    return sorted(current.model_fields) if current is not None else []


def _unwrap_model(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(tp):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None
