"""Command-line overrides: ``dotted.key=value`` sets a key, ``~dotted.key`` removes one.

They apply to the merged mapping after ``extends`` and before validation, so they are part of the
resolved spec (its hash, every stage's cache key, the parent run's params and ``spec.yaml``).

- The value is parsed as one YAML scalar or flow list: ``0.2`` is a float, ``true`` a bool,
  ``null`` clears, ``[a, b]`` is a list, anything else a string (quote it to force a string:
  ``tags.note='1e-6'``). Mappings are refused: set their keys one at a time.
- Missing intermediate mappings are created (``tags.note=x`` on a spec without ``tags``), so a typo
  in a key reaches validation and gets its ``did you mean`` there, naming the override as source.
- A path through a value that is not a mapping (``seed.x=1``) is an error here, as is removing a
  key that is not set.
- Later overrides of the same key win.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable

import yaml

from registry import yamlsafe
from registry.errors import SpecError

KEY_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
MAX_OVERRIDE_CHARS = 10_000
_FIX_SHAPE = "write key=value (a dotted key into the spec, e.g. train.algorithm.egpo_lambda=0.2) or ~key to remove one"


class OverrideSource(str):
    """Where a key came from when an override set it; validation errors print this as the source."""

    @classmethod
    def of(cls, text: str) -> "OverrideSource":
        return cls(f"override {_quote(text)}")


@dataclass(frozen=True)
class Override:
    text: str
    """As typed (goes into the ``rlreg.overrides`` tag)."""
    path: tuple[str, ...]
    remove: bool
    value: Any = None

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def source(self) -> OverrideSource:
        return OverrideSource.of(self.text)


def parse_override(text: str) -> Override:
    if not isinstance(text, str):
        raise TypeError(f"an override is a string, got {type(text).__name__}")
    where = OverrideSource.of(text)
    if not text.strip():
        raise SpecError(f"{where}: empty override ({_FIX_SHAPE})")
    if len(text) > MAX_OVERRIDE_CHARS:
        raise SpecError(f"override of {len(text)} characters: longer than {MAX_OVERRIDE_CHARS} (put it in a spec file)")
    if text.startswith("~"):
        if "=" in text:
            raise SpecError(f"{where}: ~key removes a key and takes no value (write ~{text[1:].split('=')[0]})")
        return Override(text, _parse_key(text[1:], where), remove=True)
    key, sep, value_text = text.partition("=")
    if not sep:
        raise SpecError(f"{where}: no '=' ({_FIX_SHAPE})")
    path = _parse_key(key, where)
    if path == ("extends",):
        raise SpecError(f"{where}: extends: cannot be overridden (overrides apply after extends; "
                        "run the other spec, or write a spec file that extends it)")
    return Override(text, path, remove=False, value=_parse_value(value_text, where))


def _parse_key(key: str, where: str) -> tuple[str, ...]:
    if not key:
        raise SpecError(f"{where}: empty key ({_FIX_SHAPE})")
    parts = tuple(key.split("."))
    for part in parts:
        if not KEY_PART_RE.match(part):
            shown = part or "(empty)"
            raise SpecError(f"{where}: key part {shown!r} is not a spec key "
                            "(keys are letters, digits, '_' and '-', joined by '.')")
    return parts


def _parse_value(text: str, where: str) -> Any:
    if text == "":
        raise SpecError(f"{where}: empty value (write key=null to clear it, key='' for an empty string, "
                        "or ~key to remove it)")
    try:
        value = yamlsafe.load(text)  # bounded like spec files: alias bombs, huge integers
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: value {text!r} is not valid YAML ({problem}; quote it to pass a string, "
                        f"e.g. '\"{text}\"')") from None
    except RecursionError:
        raise SpecError(f"{where}: value nested too deeply") from None
    if isinstance(value, dict):
        raise SpecError(f"{where}: value {text!r} is a YAML mapping (set its keys one at a time, "
                        "e.g. train.algorithm.egpo_lambda=0.2, or quote it for a string)")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return text  # YAML reads 2024-01-01 as a date; spec fields that look like dates are strings
    return value


def parse_overrides(texts: Iterable[str]) -> list[Override]:
    return [parse_override(t) for t in texts]


def apply_overrides(
    raw: dict[str, Any], overrides: Iterable[Override], origins: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of ``raw`` with the overrides applied, and ``origins`` updated so every key an
    override set (or removed) maps to that override."""
    out = copy.deepcopy(raw)
    origins = dict(origins or {})
    for ov in overrides:
        _apply_one(out, ov)
        for key in [k for k in origins if k == ov.key or k.startswith(ov.key + ".")]:
            del origins[key]
        origins[ov.key] = ov.source
    return out, origins


def _apply_one(data: dict[str, Any], ov: Override) -> None:
    node: Any = data
    walked: list[str] = []
    for part in ov.path[:-1]:
        walked.append(part)
        child = node.get(part)
        if child is None:
            if ov.remove:
                raise SpecError(f"{ov.source}: {'.'.join(walked)}: not set, so nothing to remove{_close(part, node)}")
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise SpecError(
                f"{ov.source}: {'.'.join(walked)}: is {_short(child)} ({type(child).__name__}), not a mapping, "
                f"so it has no key '{ov.path[len(walked)]}' (set {'.'.join(walked)}=<value> to replace it)"
            )
        node = child
    last = ov.path[-1]
    if ov.remove:
        if last not in node:
            raise SpecError(f"{ov.source}: {ov.key}: not set, so nothing to remove{_close(last, node)}")
        del node[last]
    else:
        node[last] = copy.deepcopy(ov.value)


def _close(part: str, node: dict[str, Any]) -> str:
    close = difflib.get_close_matches(part, [str(k) for k in node], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _quote(text: str) -> str:
    shown = text if len(text) <= 200 else text[:197] + "..."
    return "'" + shown.replace("'", "\\'") + "'"


def split_option(text: str | None) -> list[str]:
    """``--overrides "a=1 b='x y'"`` (one string, as ``mlflow run -P overrides=…`` passes it) →
    the overrides, split like a shell would, never evaluated by one."""
    import shlex

    from registry.errors import UsageError

    if not text or not text.strip():
        return []
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--overrides {text!r}: {exc} (close the quote)") from None


def change_lines(loaded: Any) -> list[str]:
    """``key: before -> after`` for each key the command-line overrides changed (a LoadedSpec)."""
    from registry.diff import diff_specs, fmt
    from registry.spec import Spec

    if not loaded.overrides or loaded.base_raw is None:
        return []
    try:
        before = Spec.model_validate(loaded.base_raw).model_dump(mode="json")
    except Exception:  # the file alone may not validate (an override can fix it): compare as written
        before = loaded.base_raw
    after = loaded.spec.model_dump(mode="json")
    return [f"{c.key}: {fmt(c.left)} -> {fmt(c.right)}" for c in diff_specs(before, after)]
