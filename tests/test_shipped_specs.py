"""The specs in specs/ validate, and verl7 vs verl8 differ exactly by the EGPO keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import main
from registry.loader import list_specs, load_spec
from registry.schema import spec_json_schema
from registry.study.load import is_study_file, list_studies

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml") if not is_study_file(p))
STUDIES = sorted(p for p in (ROOT / "specs").glob("*.yaml") if is_study_file(p))


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_validates_and_points_at_schema(path):
    loaded = load_spec(path)
    assert loaded.spec.name == path.stem
    assert path.read_text().startswith("# yaml-language-server: $schema=../docs/spec.schema.json")


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_validates_with_every_cell(path):
    from registry.study.load import validate_study

    loaded = validate_study(path)
    assert path.name == f"study-{loaded.name}.yaml" and len(loaded.study.seeds) >= 3
    assert path.read_text().startswith("# yaml-language-server: $schema=../docs/study.schema.json")


def test_shipped_studies_are_the_two_pairs():
    from registry.study.load import load_study

    assert {p.stem for p in STUDIES} >= {"study-grpo-vs-egpo", "study-verl7-vs-verl8"}
    pairs = {load_study(p).name: {a.spec for a in load_study(p).study.arms.values()} for p in STUDIES}
    assert pairs["grpo-vs-egpo"] == {"demo-sft", "demo-grpo", "demo-egpo"} and pairs["verl7-vs-verl8"] == {"verl7", "verl8"}


def test_validate_all_exits_zero():
    r = CliRunner().invoke(main, ["validate"])
    assert r.exit_code == 0, r.output
    assert len([ln for ln in r.output.splitlines() if ln.startswith("ok ")]) == len(list_specs()) + len(list_studies())


def test_schema_file_is_current():
    shipped = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    assert shipped == spec_json_schema(), "run: rlreg schema -o docs/spec.schema.json"


def test_schema_carries_descriptions():
    schema = spec_json_schema()
    algo = schema["$defs"]["AlgorithmSpec"]["properties"]
    assert "λ" in algo["egpo_lambda"]["description"]
    assert algo["adv_estimator"]["enum"] == ["grpo", "egpo", "egpo_token"]


def _diff_keys(a, b):
    r = CliRunner().invoke(main, ["diff", a, b, "--format", "json"])
    assert r.exit_code == 0, r.output
    return {row["key"] for row in json.loads(r.output)}


def test_demo_pair_differs_only_by_egpo_keys():
    keys = _diff_keys("demo-grpo", "demo-egpo")
    egpo = {"train.algorithm.adv_estimator", "train.algorithm.egpo_lambda", "train.algorithm.egpo_alpha"}
    assert egpo <= keys
    assert keys - egpo <= {"name", "extends", "description"}


@pytest.mark.skipif(not (ROOT / "specs" / "verl8.yaml").exists(), reason="verl specs not shipped yet")
def test_verl_pair_differs_only_by_egpo_keys():
    keys = _diff_keys("verl7", "verl8")
    # verl8 as hardtry ran it: EGPO with whole-response entropy (entropy_scope: response)
    egpo = {"train.algorithm.adv_estimator", "train.algorithm.egpo_lambda", "train.algorithm.egpo_alpha",
            "train.algorithm.entropy_scope"}
    assert egpo <= keys
    assert keys - egpo <= {"name", "extends", "description"}


@pytest.mark.skipif(not (ROOT / "specs" / "verl8-think.yaml").exists(), reason="verl specs not shipped yet")
def test_verl8_think_is_verl8_with_the_think_scope_only():
    r = CliRunner().invoke(main, ["diff", "verl8", "verl8-think", "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = {row["key"]: row for row in json.loads(r.output)}
    assert set(rows) - {"name", "extends", "description"} == {"train.algorithm.entropy_scope"}
    assert (rows["train.algorithm.entropy_scope"]["a"], rows["train.algorithm.entropy_scope"]["b"]) == ("response", "think")


def test_diff_text_and_md_formats():
    r = CliRunner().invoke(main, ["diff", "demo-grpo", "demo-egpo"])
    assert "~ train.algorithm.adv_estimator" in r.output and "grpo  ->  egpo" in r.output
    assert "train.rollout.n" not in r.output
    r = CliRunner().invoke(main, ["diff", "demo-grpo", "demo-egpo", "--all", "--format", "md"])
    assert "| `train.rollout.n` | 8 | 8 |" in r.output


@pytest.mark.parametrize("cmd", ["list", "show", "validate", "schema", "diff", "run", "compare", "report", "plot-entropy",
                                 "import", "study", "runs"])
def test_help_smoke(cmd):
    r = CliRunner().invoke(main, [cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output


def test_show_resolved_prints_overrides():
    r = CliRunner().invoke(main, ["show", "demo-egpo", "--resolved"])
    assert r.exit_code == 0
    assert "# resolved: demo-egpo <- demo-grpo" in r.output
    assert "# override train.algorithm.adv_estimator: grpo -> egpo" in r.output
    r = CliRunner().invoke(main, ["show", "demo-egpo", "--format", "json"])
    assert json.loads(r.output)["extends"] == "demo-grpo"


def test_demo_sft_is_the_pairs_baseline_with_shared_convert_and_sft():
    """demo-sft evaluates demo-grpo's SFT model: same convert/sft cache keys, same eval settings,
    no train or merge (so the eval stage picks sft.model)."""
    from registry.stages import stage_spec_payload

    grpo, sft = load_spec("demo-grpo").spec, load_spec("demo-sft").spec
    assert sft.stages() == ["convert", "sft", "eval"]
    for stage in ("convert", "sft", "eval"):
        assert stage_spec_payload(stage, sft) == stage_spec_payload(stage, grpo), stage
