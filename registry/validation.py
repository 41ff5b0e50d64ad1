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


_NUMERIC_KINDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
                  "int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "multiple_of",
                  "int_parsing_size"}
_TYPE_FIX = {
    "string_type": "write text; quote values YAML reads as numbers or booleans, e.g. '5'",
    "bool_type": "use true or false", "bool_parsing": "use true or false",
    "dict_type": "write a mapping, e.g. `key: value` on indented lines", "model_type": "write a mapping of its fields",
    "list_type": "write a list, e.g. [a, b]", "none_required": "remove it",
}


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
            close = f"; did you mean '{m[0]}'?" if m else ""
        return f"{_short(value)} is not allowed (use {expected}{close})"
    if kind in ("value_error", "assertion_error"):
        text = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return text if _has_fix(text) else f"{text} (change the value)"
    if kind in _NUMERIC_KINDS:
        return _numeric(err, loc, root)
    if kind in ("string_too_short", "too_short"):
        return f"must not be empty, got {_short(value)} (give a value)"
    if kind in ("string_too_long", "too_long"):
        limit = (err.get("ctx") or {}).get("max_length")
        size = len(value) if hasattr(value, "__len__") else "?"
        unit = "characters" if kind == "string_too_long" else "entries"
        return f"has {size} {unit}, more than the {limit} allowed (shorten it)"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "model_type" or kind == "dict_type":
        fix = _TYPE_FIX.get(kind, "use a value of the type the field takes; `rlreg schema` lists them")
        return f"{msg.lower()}, got {_short(value)} ({type(value).__name__}) ({fix})"
    return f"{msg} (got {_short(value)}; see `rlreg schema` for what the field takes)"


_FIX_RE = None


def _has_fix(text: str) -> bool:
    """A fix clause: a trailing parenthesis, or `; <verb> …`, or a suggestion."""
    import re

    global _FIX_RE
    if _FIX_RE is None:
        _FIX_RE = re.compile(r"\)\s*$|[;:]\s*(?:use|set|lower|raise|add|remove|give|write|drop|rename|shorten|keep|"
                             r"change|pick|list|put|move)\b|did you mean|allowed here|, or ")
    return bool(_FIX_RE.search(text))


def _numeric(err: dict[str, Any], loc: tuple, root: type[BaseModel]) -> str:
    """"must be a finite number > 0 and ≤ 1, got inf (e.g. lr: 1e-06)": the range from the field's
    own constraints, the example from its default."""
    info = _field_info_at(root, loc)
    value = err.get("input")
    bounds, is_int, example = [], err.get("type", "").startswith("int"), None
    if info is not None:
        for meta in info.metadata:
            for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
                bound = getattr(meta, attr, None)
                if bound is not None:
                    bounds.append(f"{sym} {_num(bound)}")
        ann = str(info.annotation)
        is_int = "int" in ann and "float" not in ann
        default = info.get_default(call_default_factory=False) if not info.is_required() else None
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            example = default
    if example is None:
        example = _example_in(bounds, is_int)
    kind_word = "an integer" if is_int else "a finite number"
    name = str(loc[-1]) if loc else "value"
    rng = f" {' and '.join(bounds)}" if bounds else ""
    return f"must be {kind_word}{rng}, got {_short(value)} (e.g. {name}: {_num(example)})"


def _num(x: Any) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return repr(x)
    if isinstance(x, int) and abs(x) >= 100_000:
        return f"{x:_}"
    return repr(x)


def _example_in(bounds: list[str], is_int: bool) -> Any:
    low = next((b for b in bounds if b[0] in ">≥"), None)
    if low is None:
        return 0 if is_int else 0.5
    sym, num = low.split(" ", 1)
    v = float(num.replace("_", ""))
    v = v + (1 if sym == ">" else 0) if is_int else (v * 2 if sym == ">" and v > 0 else v + (0.5 if sym == ">" else 0))
    return int(v) if is_int else v


def _field_info_at(model: type[BaseModel], loc: tuple) -> Any:
    current: Any = model
    info = None
    for part in loc:
        m = _unwrap_model(current)
        if m is None or isinstance(part, int):
            continue
        info = m.model_fields.get(str(part))
        if info is None:
            return None
        current = info.annotation
    return info


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
