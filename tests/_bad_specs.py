"""A corpus of wrong specs, one mistake each, derived from the schema: every numeric field gets
edge values (negative, zero, inf, nan, 10^12, text), every string/bool/literal/list field a value
of the wrong kind, every section an unknown key; plus MLflow limits. Used by
tests/test_spec_messages.py (every message carries a fix clause) and to count messages without one:

    PYTHONPATH=<checkout> python tests/_bad_specs.py
"""

from __future__ import annotations

import copy
import math
import re
import sys
import tempfile
import typing
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "specs" / "demo-grpo.yaml").read_text())
BASE.update({"eval": BASE.get("eval") or {}, "entropy": {}, "generate": {}, "merge": {}})
FIX_RE = re.compile(r"[;:]\s*(?:use|set|lower|raise|add|remove|give|write|drop|rename|shorten|keep|change|pick|"
                    r"list|put|move)\b|did you mean|allowed here|, or ")
TRAILING_PAREN = re.compile(r"\(([^()]*)\)\s*(\[set in [^\]]*\])?\s*$")


def has_fix(line: str) -> bool:
    """A fix clause: a trailing parenthesis that says what to do (not just "(got -1)" or "(int)"),
    or `; <verb> …`, or a suggestion."""
    m = TRAILING_PAREN.search(line)
    if m and not re.match(r"^(got\b|\w+$)", m.group(1).strip()):
        return True
    return bool(FIX_RE.search(line))


def _leaves(model, prefix=""):
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        ann = info.annotation
        args = typing.get_args(ann) or (ann,)
        sub = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        path = f"{prefix}{name}"
        if sub:
            yield from _leaves(sub[0], path + ".")
        else:
            yield path, ann


def _bad_values(ann) -> list:
    text = str(ann)
    if "float" in text:
        return [-1.0, 0.0, math.inf, -math.inf, math.nan, 1e12, "abc", [1]]
    if "int" in text:
        return [-1, 0, 10**12, 2**64, "abc", 1.5]
    if "Literal" in text:
        return ["bogus", 5]
    if "bool" in text:
        return ["maybe", 7]
    if "dict" in text:
        return [5, "x"]
    if "list" in text:
        return [5, {"a": 1}]
    if "str" in text:
        return [5, ["a"], {"a": 1}]
    return []


def _set(d, path, value):
    *parents, last = path.split(".")
    for p in parents:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[last] = value


def corpus() -> list[tuple[str, dict]]:
    from registry.spec import Spec

    out = []
    for path, ann in _leaves(Spec):
        if path in ("name",):
            continue
        for value in _bad_values(ann):
            spec = copy.deepcopy(BASE)
            _set(spec, path, value)
            out.append((f"{path}={value!r}", spec))
    for section in ("", "data", "model", "sft", "train", "train.algorithm", "eval", "eval.bfcl", "entropy", "generate"):
        spec = copy.deepcopy(BASE)
        _set(spec, f"{section}.bogus_key" if section else "bogus_key", 1)
        out.append((f"unknown {section}", spec))
    for label, tags in (("tag @", {"owner@lab": "x"}), ("tag long", {"k" * 300: "x"}),
                        ("tag many", {f"t{i}": "x" for i in range(101)}), ("tag value", {"a": "v" * 9000})):
        spec = copy.deepcopy(BASE)
        spec["tags"] = tags
        out.append((label, spec))
    spec = copy.deepcopy(BASE)
    spec["experiment"] = ""
    out.append(("experiment empty", spec))
    return out


def messages() -> list[tuple[str, str]]:
    from registry.errors import RlregError
    from registry.loader import load_spec

    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, spec) in enumerate(corpus()):
            path = Path(tmp) / f"c{i}.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
            try:
                load_spec(path)
            except RlregError as exc:
                for line in getattr(exc, "problems", None) or [str(exc)]:
                    found.append((label, line))
            except Exception as exc:  # noqa: BLE001 - counted: a crash is a message without a fix
                found.append((label, f"CRASH {type(exc).__name__}: {exc}"))
    return found


if __name__ == "__main__":  # the checkout measured is the one on PYTHONPATH
    msgs = messages()
    lacking = [m for m in msgs if not has_fix(m[1])]
    accepted = len(corpus()) - len({label for label, _ in msgs})
    print(f"{len(corpus())} bad specs, {accepted} accepted, {len(msgs)} error messages, {len(lacking)} without a fix clause")
    for label, line in lacking[: int(sys.argv[1]) if len(sys.argv) > 1 else 10]:
        print(f"  {label}: {line}")
