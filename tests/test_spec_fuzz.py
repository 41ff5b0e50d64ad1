"""Property-based fuzzing of specs: mutated variants of the shipped specs must end in a clean
`Error:` with exit 2 (or validate), never a traceback."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "specs").glob("*.yaml"))}
BASES = {k: v for k, v in SHIPPED.items() if not v.get("extends")}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", "💥", "\x00", "null", "1e999", "egpo", "../../etc/passwd", "a" * 10000]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)


def paths(obj, prefix=()):
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    return out


@st.composite
def mutated_spec(draw):
    name = draw(st.sampled_from(sorted(BASES)))
    spec = copy.deepcopy(BASES[name])
    kind = draw(st.sampled_from(["set", "unknown", "delete", "unicode", "deep", "yaml", "extends"]))
    all_paths = paths(spec)
    if kind in ("set", "delete", "unicode") and all_paths:
        path = draw(st.sampled_from(all_paths))
        parent = spec
        for k in path[:-1]:
            parent = parent[k]
        if kind == "set":
            parent[path[-1]] = draw(values)
        elif kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFFF), max_size=20))
    elif kind == "unknown":
        targets = [()] + [p for p in all_paths if isinstance(_get(spec, p), dict)]
        target = _get(spec, draw(st.sampled_from(targets)))
        target[draw(st.text(min_size=1, max_size=12))] = draw(values)
    elif kind == "deep":
        spec.pop("tags", None)
    elif kind == "extends":
        spec["extends"] = draw(st.sampled_from(["fuzz", "nope", "../x", "", 5, None, ["a"]]))
    text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
    if kind == "deep":  # written as flow text: deeper than any serializer would recurse
        depth = draw(st.integers(min_value=20, max_value=5000))
        text += "tags: " + "{k: [" * depth + "1" + "]}" * depth + "\n"
    if kind == "yaml":
        cut = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:cut] + draw(st.sampled_from(["{", "[", ": :", "\t- x", "&a *b", "!!python/object:os.system", "'"])) + text[cut:]
    return text


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=mutated_spec())
def test_mutated_specs_fail_cleanly(text, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "fuzz.yaml").write_text(text, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["validate", str(d / "fuzz.yaml")])
    assert result.exit_code in (0, 2), (result.exit_code, result.output, text[:500])
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith("Error: "), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    else:
        assert result.output.startswith("ok ")


def test_cyclic_extends_between_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RLREG_SPECS_DIR", str(tmp_path))
    (tmp_path / "x.yaml").write_text("extends: y\n")
    (tmp_path / "y.yaml").write_text("extends: x\n")
    r = CliRunner().invoke(main, ["validate", "x"])
    assert r.exit_code == 2 and "cycle x -> y -> x" in r.output


def test_nan_and_inf_rejected_where_bounded(tmp_path):
    spec = copy.deepcopy(SHIPPED["demo-grpo"])
    spec["train"]["optimizer"]["lr"] = math.inf
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "s.yaml")])
    assert r.exit_code in (0, 2) and "Traceback" not in r.output
