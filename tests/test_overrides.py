"""Command-line overrides: parsing, precedence over `extends`, errors naming the override."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import SpecError
from registry.loader import load_spec
from registry.overrides import parse_override

BASE = """\
data: {synthetic: {num_records: 10}}
model: {tiny: {}}
seed: 7
tags: {a: x}
train:
  algorithm: {adv_estimator: egpo, egpo_lambda: 0.4}
  rollout: {n: 4}
"""


def write(d: Path, name: str, text: str) -> Path:
    p = d / f"{name}.yaml"
    p.write_text(text)
    return p


@pytest.fixture()
def specs(tmp_path, monkeypatch):
    d = tmp_path / "specs"
    d.mkdir()
    monkeypatch.setenv("RLREG_SPECS_DIR", str(d))
    monkeypatch.chdir(tmp_path)
    write(d, "base", BASE)
    write(d, "child", "extends: base\ntrain: {algorithm: {egpo_lambda: 0.3}, rollout: {n: 2}}\n")
    return d


@pytest.mark.parametrize("text,value", [
    ("seed=3", 3), ("train.algorithm.egpo_lambda=0.2", 0.2), ("x.y=true", True), ("x=null", None),
    ("x=[1, 2]", [1, 2]), ("x=[a,b]", ["a", "b"]), ("tags.note=lr-probe", "lr-probe"),
    ("x='1e-6'", "1e-6"), ("x=1.0e-6", 1e-6), ("x=a=b", "a=b"), ("x=2024-01-01", "2024-01-01"),
    ("x=''", ""), ("x=hello world", "hello world"),
])
def test_values_are_yaml_scalars_or_flow_lists(text, value):
    ov = parse_override(text)
    assert not ov.remove and ov.value == value and type(ov.value) is type(value)


def test_remove_parses():
    ov = parse_override("~train.rollout")
    assert ov.remove and ov.path == ("train", "rollout")


@pytest.mark.parametrize("text,fragment", [
    ("seed", "no '='"),
    ("=3", "empty key"),
    ("a..b=1", "key part '(empty)'"),
    ("a b=1", "key part 'a b'"),
    ("x=", "empty value"),
    ("x=[1, 2", "is not valid YAML"),
    ("x={a: 1}", "is a YAML mapping"),
    ("x=a: b", "is a YAML mapping"),
    ("~x=1", "takes no value"),
    ("extends=verl7", "cannot be overridden"),
    ("", "empty override"),
])
def test_bad_overrides_are_clear(text, fragment):
    with pytest.raises(SpecError) as exc:
        parse_override(text)
    assert fragment in str(exc.value)
    assert str(exc.value).startswith(f"override '{text}'") or text == "" and "override ''" in str(exc.value)


def test_override_wins_over_extends_and_file(specs):
    loaded = load_spec("child", overrides=["train.algorithm.egpo_lambda=0.2", "seed=3"])
    assert loaded.spec.train.algorithm.egpo_lambda == 0.2
    assert loaded.spec.seed == 3
    assert loaded.spec.train.rollout.n == 2  # untouched keys keep the child's value
    assert loaded.overrides == ["train.algorithm.egpo_lambda=0.2", "seed=3"]
    assert loaded.raw["seed"] == 3
    assert load_spec("child").spec.train.algorithm.egpo_lambda == 0.3  # files untouched


def test_later_override_wins_and_creates_missing_mappings(specs):
    loaded = load_spec("base", overrides=["tags.note=lr-probe", "tags.note=second", "~tags.a"])
    assert loaded.spec.tags == {"note": "second"}


def test_remove_restores_the_default(specs):
    loaded = load_spec("child", overrides=["~seed", "~train.rollout.n"])
    assert loaded.spec.seed == 42
    assert loaded.spec.train.rollout.n == type(loaded.spec.train.rollout).model_fields["n"].default


def test_override_sets_a_cleared_section(specs):
    write(specs, "nosft", "extends: base\nsft: null\n")
    assert load_spec("nosft", overrides=["sft.max_steps=30"]).spec.sft.max_steps == 30


def test_typo_names_the_override_with_did_you_mean(specs):
    with pytest.raises(SpecError) as exc:
        load_spec("child", overrides=["train.algorithm.egpo_lambd=0.2"])
    assert str(exc.value) == ("override 'train.algorithm.egpo_lambd=0.2': train.algorithm.egpo_lambd: "
                              "unknown field (did you mean egpo_lambda?)")
    assert exc.value.exit_code == 2


def test_bad_type_names_the_override(specs):
    with pytest.raises(SpecError) as exc:
        load_spec("child", overrides=["train.rollout.n=many"])
    assert str(exc.value).startswith("override 'train.rollout.n=many': train.rollout.n:")
    assert "'many'" in str(exc.value)


def test_file_errors_still_name_the_file(specs):
    write(specs, "bad", "extends: base\nsft: {max_steps: lots}\n")
    with pytest.raises(SpecError) as exc:
        load_spec("bad", overrides=["seed=1"])
    assert str(exc.value).startswith("specs/bad.yaml: sft.max_steps:")


def test_path_through_a_scalar_is_an_error(specs):
    with pytest.raises(SpecError, match=r"override 'seed.x=1': seed: is 7 \(int\), not a mapping"):
        load_spec("base", overrides=["seed.x=1"])


def test_removing_an_unset_key_suggests(specs):
    with pytest.raises(SpecError, match=r"train.rolout: not set, so nothing to remove \(did you mean rollout\?\)"):
        load_spec("base", overrides=["~train.rolout.n"])
    with pytest.raises(SpecError, match="nothing to remove"):
        load_spec("base", overrides=["~train.rollout.temperature"])


def test_removing_a_required_section_names_the_override(specs):
    with pytest.raises(SpecError) as exc:
        load_spec("base", overrides=["~model"])
    assert "need a `model` section" in str(exc.value)
    assert "[with override '~model']" in str(exc.value)


def test_a_single_string_is_refused(specs):
    with pytest.raises(TypeError):
        load_spec("base", overrides="seed=1")


def test_spec_hash_changes_with_an_override(specs):
    from registry.hashing import spec_hash

    def h(*ov):
        return spec_hash(load_spec("child", overrides=list(ov)).spec.model_dump(mode="json"))

    assert h() != h("train.algorithm.egpo_lambda=0.2")
    assert h() == h("train.algorithm.egpo_lambda=0.3")  # same resolved spec, same hash


def test_extends_resolves_next_to_the_file_then_in_specs(specs, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    arm = write(scratch, "arm", "extends: child\nseed: 5\n")
    loaded = load_spec(str(arm))
    assert loaded.spec.seed == 5 and loaded.spec.train.algorithm.egpo_lambda == 0.3
    assert [p.name for p in loaded.chain] == ["arm.yaml", "child.yaml", "base.yaml"]
    # a file next to the scratch spec wins over the project's specs/
    write(scratch, "child", "extends: base\ntrain: {algorithm: {egpo_lambda: 0.1}}\n")
    assert load_spec(str(arm)).spec.train.algorithm.egpo_lambda == 0.1
    assert load_spec(str(arm)).chain[1] == scratch / "child.yaml"


def test_extends_missing_everywhere_says_where_it_looked(specs, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    arm = write(scratch, "arm", "extends: chlid\n")
    with pytest.raises(SpecError) as exc:
        load_spec(str(arm))
    assert "extends: no spec named 'chlid' next to it or in specs/" in str(exc.value)
    assert "did you mean child?" in str(exc.value)


# -- the CLI ----------------------------------------------------------------------------------------
def cli(*args):
    from click.testing import CliRunner

    from registry.cli import main

    return CliRunner().invoke(main, list(args))


def test_diff_applies_trailing_overrides_to_b(specs):
    r = cli("diff", "child", "child", "train.algorithm.egpo_lambda=0.2", "--format", "json")
    assert r.exit_code == 0, r.output
    import json

    assert json.loads(r.output) == [{"key": "train.algorithm.egpo_lambda", "kind": "changed", "a": 0.3, "b": 0.2}]
    r = cli("diff", "child", "child", "--a-set", "seed=1", "--b-set", "seed=2")
    assert r.exit_code == 0, r.output
    # the spec has no eval section: the seed reaches train.seed only
    assert r.output.strip().splitlines() == ["~ seed        1  ->  2", "~ train.seed  1  ->  2"]


def test_diff_of_the_shipped_pair_shows_exactly_the_override(monkeypatch):
    monkeypatch.delenv("RLREG_SPECS_DIR", raising=False)
    r = cli("diff", "demo-egpo", "demo-egpo", "train.algorithm.egpo_lambda=0.2")
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines() == ["~ train.algorithm.egpo_lambda  0.4  ->  0.2"]


def test_diff_same_spec_no_overrides(specs):
    r = cli("diff", "child", "child", "seed=7")
    assert r.exit_code == 0 and "resolve to the same spec" in r.output


def test_show_with_overrides_is_resolved_and_lists_them(specs):
    r = cli("show", "child", "train.algorithm.egpo_lambda=0.2", "seed=3")
    assert r.exit_code == 0, r.output
    import yaml

    assert "# set train.algorithm.egpo_lambda: 0.3 -> 0.2" in r.output
    assert "# set seed: 7 -> 3" in r.output
    data = yaml.safe_load(r.output)
    assert data["train"]["algorithm"]["egpo_lambda"] == 0.2 and data["seed"] == 3


def test_cli_errors_name_the_override_and_exit_2(specs):
    for args, fragment in [
        (("show", "child", "train.algorithm.egpo_lambd=0.2"),
         "Error: override 'train.algorithm.egpo_lambd=0.2': train.algorithm.egpo_lambd: unknown field "
         "(did you mean egpo_lambda?)"),
        (("run", "child", "seed.x=1", "--dry-run"), "Error: override 'seed.x=1': seed: is 7 (int), not a mapping"),
        (("run", "child", "base", "--dry-run"), "Error: override 'base': no '='"),
        (("run", "child", "--overrides", "seed=1 'x=a", "--dry-run"), "No closing quotation"),
        (("diff", "child", "base", "--a-set", "x=[1"), "Error: override 'x=[1': value '[1' is not valid YAML"),
    ]:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert fragment in r.output, (args, r.output)
        assert "Traceback" not in r.output


def test_run_dry_run_prints_the_overrides(specs):
    r = cli("run", "child", "--overrides", "seed=3 'tags.note=a b'", "train.rollout.n=8", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "Overrides: seed=3 'tags.note=a b' train.rollout.n=8" in r.output
    assert "  set train.rollout.n: 2 -> 8" in r.output
    assert "  set seed: 7 -> 3" in r.output


def test_a_number_for_a_string_field_says_quote_it(specs):
    with pytest.raises(SpecError) as exc:
        load_spec("base", overrides=["tags.run=1"])
    assert str(exc.value).startswith("override 'tags.run=1': tags.run: input should be a valid string")
    assert "quote the value" in str(exc.value)
    assert load_spec("base", overrides=["tags.run='1'"]).spec.tags["run"] == "1"


def test_validate_applies_overrides_to_every_spec_named(specs):
    import json

    r = cli("validate", "child", "base", "train.rollout.n=8", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [(row["spec"], row["valid"], row["overrides"]) for row in rows] == [
        ("child", True, ["train.rollout.n=8"]), ("base", True, ["train.rollout.n=8"])]
    r = cli("validate", "child", "train.rollout.n=8")
    assert r.exit_code == 0 and "child.yaml + train.rollout.n=8" in r.output


def test_validate_refuses_a_bad_override_and_overrides_without_a_spec(specs):
    r = cli("validate", "child", "train.rollout.n=0")
    assert r.exit_code == 2 and "override 'train.rollout.n=0'" in r.output
    r = cli("validate", "~train.rollout")
    assert r.exit_code == 2 and "overrides need a spec" in r.output
