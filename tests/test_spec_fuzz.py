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


# -- issue 16: YAML level, numeric edges, MLflow limits, secrets, and a dry-run answer ---------------
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import typing  # noqa: E402

from pydantic import BaseModel  # noqa: E402

from registry.redact import redact_text  # noqa: E402
from registry.spec import Spec  # noqa: E402

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _numeric_leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, typing.Any]]:
    out = []
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation) or (info.annotation,)
        sub = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if sub:
            out += _numeric_leaves(sub[0], f"{prefix}{name}.")
        elif any(a in (int, float) for a in args):
            out.append((f"{prefix}{name}", info))
    return out


NUMERIC = _numeric_leaves(Spec)
EDGES = [math.nan, math.inf, -math.inf, 0, -0.0, -1, 1e308, 1e-320, 2**31, 2**32, 2**63, 2**64, -(2**63), 10**12, True]


def _bounds(info) -> tuple[float, float, bool]:
    lo, hi = -math.inf, math.inf
    for m in info.metadata:
        lo = max(lo, getattr(m, "ge", None) if getattr(m, "ge", None) is not None else -math.inf)
        hi = min(hi, getattr(m, "le", None) if getattr(m, "le", None) is not None else math.inf)
        if getattr(m, "gt", None) is not None:
            lo = max(lo, m.gt)
        if getattr(m, "lt", None) is not None:
            hi = min(hi, m.lt)
    return lo, hi, "float" not in str(info.annotation)


def _write_and_validate(tmp_path_factory, text: str):
    d = tmp_path_factory.mktemp("fuzz16")
    (d / "fuzz.yaml").write_text(text, encoding="utf-8")
    return d / "fuzz.yaml", CliRunner().invoke(main, ["validate", str(d / "fuzz.yaml")])


def _clean(result) -> None:
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 2:
        assert result.output.startswith("Error: "), result.output


@st.composite
def yaml_level(draw):
    text = yaml.safe_dump(copy.deepcopy(SHIPPED["demo-grpo"]), sort_keys=False)
    kind = draw(st.sampled_from(["bomb", "dup", "bigint", "anchor", "tabs", "huge"]))
    if kind == "bomb":
        width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 9))
        text += "tags:\n  l0: &l0 [x]\n" + "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i-1}'] * width)}]\n"
                                                   for i in range(1, depth + 1))
    elif kind == "dup":
        key = draw(st.sampled_from(["seed", "description", "experiment"]))
        text += f"{key}: 1\n{key}: 2\n"
    elif kind == "bigint":
        text += "seed: " + "7" * draw(st.integers(19, 6000)) + "\n"
    elif kind == "anchor":
        text = text.replace("sft:\n", "sft: &s\n", 1) + "eval: *s\n"
    elif kind == "tabs":
        text += "tags:\n\tx: 1\n"
    else:
        text += "description: " + "x" * draw(st.integers(5000, 9000)) + "\n"
    return text


@SETTINGS
@given(text=yaml_level())
def test_yaml_level_inputs_fail_cleanly(text, tmp_path_factory):
    _, result = _write_and_validate(tmp_path_factory, text)
    _clean(result)


@SETTINGS
@given(leaf=st.sampled_from(NUMERIC), value=st.sampled_from(EDGES))
def test_numeric_edges_refused_or_in_range(leaf, value, tmp_path_factory):
    path, info = leaf
    spec = copy.deepcopy(SHIPPED["demo-grpo"])
    spec.update({"eval": spec.get("eval") or {}, "entropy": {}, "generate": {}, "merge": {}})
    node = spec
    for k in path.split(".")[:-1]:
        node = node.setdefault(k, {}) if isinstance(node.get(k, {}), dict) else {}
    node[path.split(".")[-1]] = value
    _, result = _write_and_validate(tmp_path_factory, yaml.safe_dump(spec, sort_keys=False))
    _clean(result)
    if result.exit_code == 0:  # accepted: it must be a finite value inside the documented range
        lo, hi, _ = _bounds(info)
        assert not isinstance(value, float) or math.isfinite(value)
        assert lo <= value <= hi, (path, value, lo, hi)
    else:
        assert "(" in result.output and ")" in result.output  # a fix clause


@SETTINGS
@given(key=st.text(min_size=0, max_size=300), value=st.text(max_size=50))
def test_tags_that_validate_are_accepted_by_mlflow(key, value, tmp_path_factory):
    from mlflow.utils.validation import _validate_tag_name

    spec = copy.deepcopy(SHIPPED["demo-grpo"])
    spec["tags"] = {key: value}
    _, result = _write_and_validate(tmp_path_factory, yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    _clean(result)
    if result.exit_code == 0:
        _validate_tag_name(f"spec.tag.{key}")  # raises MlflowException if MLflow would refuse it


SECRET_SHAPES = st.sampled_from([
    "https://bob:{s}@h.example/x", "--api-key {s}", "--token={s}", "sk-{s}", "hf_{s}", "ghp_{s}", "Bearer {s}",
])


@SETTINGS
@given(shape=SECRET_SHAPES, core=st.text(alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
                                         min_size=24, max_size=30),
       where=st.sampled_from(["description", "tags.note", "tags.api_key", "eval.bfcl.base_url", "model.path",
                              "entropy.tools_config", "eval.model", "train.verl.ray_address"]))
def test_secrets_never_echoed(shape, core, where, tmp_path_factory):
    secret = shape.format(s=core)
    spec = copy.deepcopy(SHIPPED["demo-grpo"])
    spec.update({"eval": spec.get("eval") or {}, "entropy": {}})
    if where == "model.path":
        spec["model"] = {"path": secret}
    else:
        node = spec
        *parents, last = where.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = secret
    path, result = _write_and_validate(tmp_path_factory, yaml.safe_dump(spec, sort_keys=False))
    _clean(result)
    shown = CliRunner().invoke(main, ["show", str(path), "--resolved"])
    assert core not in result.output and core not in shown.output
    assert redact_text(secret) != secret


@st.composite
def valid_extreme_spec(draw):
    """A shipped non-verl spec with numeric fields pushed to the ends of their valid ranges."""
    def numeric_paths(spec):
        return [(p, info) for p, info in NUMERIC if _get_or_none(spec, p) is not None]

    # specs that set no numeric field themselves (e.g. a small `extends` file) have nothing to push
    names = [n for n, s in sorted(BASES.items())
             if (s.get("train") or {}).get("backend") != "verl" and numeric_paths(s)]
    name = draw(st.sampled_from(names))
    spec = copy.deepcopy(BASES[name])
    present = numeric_paths(spec)
    for path, info in draw(st.lists(st.sampled_from(present), min_size=1, max_size=6, unique_by=lambda x: x[0])):
        lo, hi, is_int = _bounds(info)
        lo, hi = (lo if math.isfinite(lo) else -(10**6)), (hi if math.isfinite(hi) else 10**6)
        value = draw(st.integers(math.ceil(lo), math.floor(hi)) if is_int else
                     st.floats(lo, hi, allow_nan=False, allow_infinity=False, exclude_min=True, exclude_max=True))
        node = spec
        for k in path.split(".")[:-1]:
            node = node[k]
        node[path.split(".")[-1]] = value
    return yaml.safe_dump(spec, sort_keys=False)


def _get_or_none(obj, path):
    for k in path.split("."):
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=valid_extreme_spec())
def test_any_valid_spec_gets_a_dry_run_answer_within_30s(text, tmp_path_factory):
    from hypothesis import assume

    path, result = _write_and_validate(tmp_path_factory, text)
    _clean(result)
    assume(result.exit_code == 0)  # cross-field rules (batch multiples, warmup < steps) may refuse it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the subprocess timeout is the bound (a hang fails the test); it is not a speed assertion
    done = subprocess.run([sys.executable, "-m", "registry", "run", str(path), "--dry-run"], capture_output=True,
                          text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "Stages:" in done.stdout and "Traceback" not in done.stderr
