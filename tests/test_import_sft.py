"""`rlreg import EXP_DIR` of ms-swift SFT experiment directories (tests/fixtures/hardtry_exps/sft_*,
written for these tests in the shape of hardtry's exps/full*/ and exps/lora*/): the written spec
validates, and the `swift sft` command `rlreg run --dry-run` prints passes their arguments, one by one."""

from __future__ import annotations

import json
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from registry.cli import main
from registry.importer import experiment_kind
from registry.importer.swift_files import config_argv, find_swift_command, parse_argv

ROOT = Path(__file__).resolve().parents[1]
EXPS = ROOT / "tests" / "fixtures" / "hardtry_exps"
SWIFT_PY = ROOT / ".venv-swift" / "bin" / "python"

# ms-swift 4.6.0's defaults (swift/arguments/**, swift/trainers/arguments.py) of what rlreg's command
# passes, for the arguments a fixture leaves unset
SWIFT_DEFAULTS = {"truncation_strategy": "delete", "loss_scale": "default", "per_device_train_batch_size": "1",
                  "per_device_eval_batch_size": "1", "weight_decay": "0.1", "lr_scheduler_type": "cosine",
                  "warmup_steps": "0", "max_grad_norm": "1.0", "group_by_length": "false", "seed": "42",
                  "data_seed": "42", "logging_steps": "5", "num_train_epochs": "3", "save_steps": "500",
                  "lora_dropout": "0.05", "max_steps": "-1", "save_strategy": "steps"}
# what rlreg passes on purpose, whatever their config says
DELIBERATE = {"dataset": ["<work>/train.jsonl"], "val_dataset": ["<work>/val.jsonl"], "split_dataset_ratio": ["0"],
              "output_dir": ["<work>/swift"], "add_version": ["false"], "report_to": ["none"], "eval_strategy": ["steps"]}
# the arguments each fixture's script passes after its config
SCRIPT_ARGS = {"sft_full": {"num_train_epochs": ["2"], "dataloader_num_workers": ["2"]}, "sft_lora": {},
               "sft_unknown": {"save_steps": ["10"]}}
UNKNOWN = {"sft_unknown": {"lora_rnk", "overlong_filter"}}
# unset in their config and derived by swift at run time: the only arguments allowed to differ (reported)
IMPLICIT = {"sft_unknown": {"torch_dtype", "gradient_accumulation_steps", "save_total_limit"}}
CONFIG = {"sft_full": "configs", "sft_lora": "configs", "sft_unknown": "conf"}
FIXTURES = list(SCRIPT_ARGS)


def _canon(values: list[str]) -> list:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except ValueError:
            out.append(v.lower() if v.lower() in ("true", "false") else v)
    return out


def _their_args(name: str) -> dict[str, list[str]]:
    """Their arguments, read here from the fixture's files without the importer's code."""
    config = yaml.safe_load((EXPS / name / CONFIG[name] / "sft_config.yaml").read_text())
    config.pop("ENV", None)
    out: dict[str, list[str]] = {}
    for key, value in config.items():
        key = {"train_type": "tuner_type"}.get(key, key)  # ms-swift 4's name
        if isinstance(value, list):
            out[key] = [str(v) for v in value]
        elif isinstance(value, dict):
            out[key] = [json.dumps(value)]
        else:
            out[key] = [str(value)]
    out.update(SCRIPT_ARGS[name])
    return out


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    specs = tmp_path_factory.mktemp("specs")
    out = {}
    for name in FIXTURES:
        r = _run("import", str(EXPS / name), "-o", str(specs / f"{name}.yaml"))
        assert r.exit_code == 0, r.output
        report = _run("import", str(EXPS / name), "--json")
        assert report.exit_code == 0, report.output
        dry = _run("run", "--dry-run", str(specs / f"{name}.yaml"))
        assert dry.exit_code == 0, dry.output
        lines = dry.output.splitlines()
        sft_line = next(line for line in lines if " sft --model " in line)
        argv = shlex.split(sft_line)
        assert argv[0].endswith(".venv-swift/bin/swift") and argv[1] == "sft"
        out[name] = {"path": specs / f"{name}.yaml", "dry": dry.output, "ours": parse_argv(argv[2:]),
                     "report": json.loads(report.output), "doc": yaml.safe_load((specs / f"{name}.yaml").read_text())}
    return out


def test_directory_kinds():
    assert [experiment_kind(EXPS / n) for n in ("sft_full", "sft_lora", "sft_unknown")] == ["swift"] * 3
    assert [experiment_kind(EXPS / n) for n in ("grpo_lora", "egpo_custom")] == ["verl", "verl"]


def test_config_argv_is_swifts_yaml_to_argv():
    # ms-swift 4.6.0 swift/cli/main.py parse_yaml_args: --key str(value); list items apart; dicts as JSON
    config = {"model": "/m", "dataset": ["/a.json#10", "/b.json"], "packing": True, "learning_rate": "1e-4",
              "lora_alpha": 32, "warmup_ratio": 0.05, "lr_scheduler_kwargs": {"min_lr": 1e-6}, "ENV": {"A": "1"}}
    assert config_argv(config) == ["--model", "/m", "--dataset", "/a.json#10", "/b.json", "--packing", "True",
                                   "--learning_rate", "1e-4", "--lora_alpha", "32", "--warmup_ratio", "0.05",
                                   "--lr_scheduler_kwargs", '{"min_lr": 1e-06}']
    assert parse_argv(["--a", "1", "--b", "x", "y", "--a", "-2", "--c"]) == {"a": ["-2"], "b": ["x", "y"], "c": []}


def test_swift_command_of_the_scripts():
    script = 'X="/e/c.yaml"\nNPROC_PER_NODE=2 \\\n  CUDA_VISIBLE_DEVICES=0,1 \\\n    swift sft --config "$X" \\\n  --seed 3\n'
    cmd = find_swift_command({"train_local.sh": script})
    assert cmd.env == {"NPROC_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert cmd.config == "$X" and cmd.args == ["--seed", "3"]
    assert find_swift_command({"a.sh": "# swift sft --config x.yaml\necho hi\n"}) is None
    four = find_swift_command({"t.sh": "swift sft conf/sft.yaml --save_steps 10\n"})
    assert four.config == "conf/sft.yaml" and four.args == ["--save_steps", "10"]


@pytest.mark.parametrize("name", FIXTURES)
def test_dry_run_command_passes_their_arguments_one_by_one(imported, name):
    ours, theirs = imported[name]["ours"], _their_args(name)
    assert _run("validate", str(imported[name]["path"])).exit_code == 0
    compared = 0
    for key, value in theirs.items():
        if key in DELIBERATE or key in UNKNOWN.get(name, ()):
            continue
        if key not in ours:  # left out only where it is swift's default anyway
            assert key in SWIFT_DEFAULTS, f"--{key} {value} is missing from rlreg's command"
            assert _canon(value) == _canon([SWIFT_DEFAULTS[key]]), (key, value)
        else:
            assert _canon(ours[key]) == _canon(value), (key, ours[key], value)
        compared += 1
    assert compared >= 12
    for key in set(ours) - set(theirs) - set(DELIBERATE):
        if key in IMPLICIT.get(name, ()):
            continue
        if key == "learning_rate":  # swift: 1e-5 for full, 1e-4 for tuners
            expected = ["1e-4" if theirs["tuner_type"] == ["lora"] else "1e-5"]
        elif key == "eval_steps":  # swift: follows save_steps
            expected = theirs.get("save_steps", [SWIFT_DEFAULTS["save_steps"]])
        else:
            assert key in SWIFT_DEFAULTS, f"rlreg passes --{key} {ours[key]}, which they leave unset"
            expected = [SWIFT_DEFAULTS[key]]
        assert _canon(ours[key]) == _canon(expected), (key, ours[key], expected)
    for key, value in DELIBERATE.items():
        if key != "eval_strategy" or key in theirs:
            assert ours[key] == value, key
    for key in UNKNOWN.get(name, ()):
        assert key not in ours
    assert set(IMPLICIT.get(name, ())) <= set(ours)


def test_full_fixture_maps_to_spec_fields(imported):
    entry = imported["sft_full"]
    doc, report = entry["doc"], entry["report"]
    sft = doc["sft"]
    assert report["kind"] == "swift" and sft["backend"] == "swift" and "lora" not in sft
    assert (sft["epochs"], sft["batch_size"], sft["grad_accum"], sft["lr"]) == (2.0, 2, 8, 2e-5)  # epochs: the script's
    assert (sft["max_length"], sft["truncation"], sft["train_on"], sft["grad_clip"]) == (4096, "left", "last_assistant", 0.5)
    assert (sft["save_every"], sft["eval_every"], sft["seed"], sft["swift"]["nproc_per_node"]) == (25, 20, 7, 2)
    assert sft["swift"]["extra_args"]["data_seed"] == 42, "swift's data_seed stays 42 while seed is 7"
    assert doc["model"] == {"path": "/shared/models/Qwen3-1.7B", "dtype": "bfloat16"}
    assert doc["data"] == {"source": "/shared/data/tool_calls_messages.json", "seed": 42, "max_samples": 500, "test_size": 0.1}
    assert doc["eval"]["backend"] == "bfcl" and doc["eval"]["repeats"] == 2 and doc["eval"]["bfcl"]["port"] == 8012
    tags = doc["tags"]
    assert tags["hardtry.merge_target"] == "/shared/models/sft-full-merged"
    assert tags["hardtry.recorded_bfcl"] == "multi_turn_base (Base): 50.00%, 52.00%" and tags["hardtry.swift.report_to"] == "swanlab"
    unmapped = "\n".join(report["unmapped"])
    for text in ("eval5_results: 2 BFCL result CSV(s) (Base 50.00%, 52.00%)", "README.md", "CUDA_VISIBLE_DEVICES=0,1", "summary_output_dir"):
        assert text in unmapped
    assert "# model = <work>/swift/checkpoint-<last> copied" in entry["dry"]


def test_lora_fixture_maps_lora_and_merges_with_swift_export(imported):
    entry = imported["sft_lora"]
    sft = entry["doc"]["sft"]
    assert sft["lora"] == {"r": 64, "alpha": 128.0, "dropout": 0.1, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    assert sft["lr"] == 1e-4 and sft["weight_decay"] == 0.1, "unset: swift's LoRA learning rate and weight decay"
    assert sft["swift"]["extra_args"]["deepspeed"] == "/shared/exps/sft_lora/configs/ds_config.json"
    assert entry["doc"]["data"]["max_samples"] is None, "no #N: every record"
    assert " export --adapters '<work>/swift/checkpoint-<last>' --merge_lora true --output_dir '<out>/model'" in entry["dry"]
    notes = "\n".join(entry["report"]["notes"])
    assert "configs/ds_config.json: the deepspeed config" in notes and "swift export --merge_lora" in notes
    assert entry["doc"]["eval"]["bfcl"]["extra_vllm_args"] == ["--enable-lora", "--max-loras", "1", "--max-lora-rank", "64"]


def test_unknown_keys_are_reported_and_kept_as_tags(imported):
    entry = imported["sft_unknown"]
    unmapped = entry["report"]["unmapped"]
    assert "lora_rnk = '8': not an ms-swift 4.6.0 `swift sft` argument" in "\n".join(unmapped)
    assert any(line.startswith("overlong_filter = 'True'") for line in unmapped)
    assert any("ENV = {'HF_HUB_OFFLINE': '1'}" in line for line in unmapped)
    tags, extra = entry["doc"]["tags"], entry["doc"]["sft"]["swift"]["extra_args"]
    assert tags["hardtry.swift.lora_rnk"] == "8" and "lora_rnk" not in extra
    assert extra["lr_scheduler_type"] == "linear" and extra["lr_scheduler_kwargs"] == '{"min_lr": 1e-07}'
    assert entry["doc"]["sft"]["max_steps"] == 40 and "epochs" not in entry["doc"]["sft"]
    notes = "\n".join(entry["report"]["notes"])
    for key in IMPLICIT["sft_unknown"]:
        assert f"{key}: not set in their config" in notes
    # the CLI's text output says the same
    r = _run("import", str(EXPS / "sft_unknown"))
    assert "not mapped: lora_rnk = '8'" in r.output and "3 key(s) not mapped" in r.output


def test_import_with_base_writes_only_the_difference(imported, monkeypatch, tmp_path):
    specs = imported["sft_full"]["path"].parent
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    out = specs / "sft_full_child.yaml"
    r = _run("import", str(EXPS / "sft_full"), "-o", str(out), "--base", "sft_full")
    assert r.exit_code == 0, r.output
    assert set(yaml.safe_load(out.read_text())) <= {"extends", "name", "description", "tags"}
    r = _run("import", str(EXPS / "sft_unknown"), "--base", "sft_full")
    assert r.exit_code == 2 and "the base sets sections or swift arguments the experiment does not" in r.output


def _exp(tmp_path, files: dict[str, str]) -> Path:
    root = tmp_path / "exp"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("files, message", [
    ({"configs/eval_config5.yaml": "model_name: m\n"}, "configs: neither a verl experiment"),
    ({"README.md": "x"}, "exp: neither a verl experiment"),
    ({"configs/sft_config.yaml": "model: [unclosed\n"}, "sft_config.yaml: line 2, column 1: not readable YAML: expected"),
    ({"configs/sft_config.yaml": "- model\n"}, "sft_config.yaml: expected a mapping of `swift sft` arguments"),
    ({"configs/sft_config.yaml": "dataset: [/d.json]\n"}, "sft_config.yaml: model: not set"),
    ({"configs/sft_config.yaml": "model: /m\n"}, "sft config: dataset: no training dataset"),
    ({"configs/eval_config5.yaml": "num_runs: 1\n", "train_local.sh": "swift sft --config /x/configs/sft_config.yaml\n"},
     "train_local.sh: `swift sft` reads /x/configs/sft_config.yaml, but configs/sft_config.yaml is not there"),
    ({"train_local.sh": "swift sft --config configs/sft_config.yaml\n"}, "no configs/ (or conf/) directory"),
])
def test_bad_directories_are_one_line_errors(tmp_path, files, message):
    r = _run("import", str(_exp(tmp_path, files)))
    assert r.exit_code == 2, r.output
    assert r.output.startswith("Error: ") and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_not_a_directory(tmp_path):
    r = _run("import", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "not a directory" in r.output


def test_extra_args_lists_pass_several_values():
    from registry.spec import Spec
    from runners.sft.swift import sft_argv

    spec = Spec.model_validate({"name": "t", "data": {"synthetic": {"num_records": 8}}, "model": {"path": "/m"},
                                "sft": {"backend": "swift", "swift": {"extra_args": {"modules_to_save": ["embed_tokens", "lm_head"]}}}})
    argv = sft_argv(spec.sft, model="/m", dtype="float32", train_jsonl="t", val_jsonl=None, output_dir="o")
    assert parse_argv(argv)["modules_to_save"] == ["embed_tokens", "lm_head"]


NAMES = textwrap.dedent("""
    import json
    from transformers import HfArgumentParser
    from swift.utils.utils import _patch_get_type_hints
    from swift.arguments import SftArguments
    with _patch_get_type_hints():
        parser = HfArgumentParser([SftArguments])
    print(json.dumps(sorted({a.dest for a in parser._actions if a.dest != "help"})))
""")


@pytest.mark.slow  # importing swift takes ~30 s
@pytest.mark.skipif(not SWIFT_PY.is_file(), reason=".venv-swift absent (bash scripts/setup-swift-venv.sh: ms-swift 4.6.0 on CPU torch, ~11 min)")
def test_the_known_argument_names_are_swifts():
    from registry.importer.swift_names import SFT_ARGUMENTS

    r = subprocess.run([str(SWIFT_PY), "-c", NAMES], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    theirs = set(json.loads(r.stdout.strip().splitlines()[-1]))
    assert theirs - SFT_ARGUMENTS == set(), "arguments swift accepts that the import would call unknown"
    assert {"lora_rnk", "overlong_filter", "train_type"} & theirs == set()


def test_a_secret_argument_stays_out_of_the_spec(tmp_path):
    import shutil

    root = tmp_path / "sft_secret"
    shutil.copytree(EXPS / "sft_lora", root)
    config = root / "configs" / "sft_config.yaml"
    config.write_text(config.read_text() + 'swanlab_token: "fixture-value-7f3a"\nENV:\n  HF_TOKEN: "fixture-value-9c1d"\n')
    out = tmp_path / "s.yaml"
    r = _run("import", str(root), "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "fixture-value" not in out.read_text() and "fixture-value" not in r.output
    assert "not mapped: swanlab_token (a secret) left out of the spec" in r.output
    assert "swanlab_token" not in yaml.safe_load(out.read_text())["sft"]["swift"]["extra_args"]


PARSE = textwrap.dedent("""
    import json, sys
    from transformers import HfArgumentParser
    from swift.utils.utils import _patch_get_type_hints
    from swift.arguments import SftArguments
    with _patch_get_type_hints():
        parser = HfArgumentParser([SftArguments])
    for argv in json.loads(sys.argv[1]):
        parser.parse_args(argv)  # exits 2 on an unknown argument or a bad value/choice
    print("ok")
""")


@pytest.mark.slow  # importing swift takes ~30 s
@pytest.mark.skipif(not SWIFT_PY.is_file(), reason=".venv-swift absent (bash scripts/setup-swift-venv.sh: ms-swift 4.6.0 on CPU torch, ~11 min)")
def test_swifts_parser_accepts_the_imported_commands(imported):
    argvs = []
    for name in FIXTURES:
        argv = []
        for key, values in imported[name]["ours"].items():
            argv += [f"--{key}", *values]
        argvs.append(argv)
    r = subprocess.run([str(SWIFT_PY), "-c", PARSE, json.dumps(argvs)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
