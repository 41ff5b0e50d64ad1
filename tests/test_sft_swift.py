"""``sft.backend: swift``: the spec becomes a `swift sft` / `swift export` command line, checked by
ms-swift's own argument parser in .venv-swift; the launch path runs against a stand-in executable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import runners.convert as convert
from registry.spec import Spec
from registry.stages import load_runner
from runners.sft import swift

ROOT = Path(__file__).resolve().parents[1]
SWIFT_PY = ROOT / ".venv-swift" / "bin" / "python"

# hardtry exps/lora1/configs/sft_config.yaml, in spec form
LORA1 = {
    "backend": "swift", "epochs": 1, "batch_size": 4, "grad_accum": 4, "lr": 1e-4, "weight_decay": 0.01,
    "max_length": 10240, "warmup_steps": 5, "seed": 42, "eval_every": 10, "save_every": 10,
    "lora": {"r": 16, "alpha": 32, "dropout": 0.01, "target_modules": "all-linear"},
    "swift": {"model_type": "qwen3", "template": "qwen3_nothinking",
              "extra_args": {"attn_impl": "flash_attention_2", "gradient_checkpointing": True, "packing": True}},
}


def _pairs(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = None
    for a in argv:
        if a.startswith("--"):
            key = a[2:]
            out[key] = []
        else:
            out[key].append(a)
    return out


def _sft(section: dict):
    return Spec.model_validate({"name": "t", "data": {"synthetic": {"num_records": 8}}, "model": {"path": "/models/Qwen3-4B", "dtype": "bfloat16"},
                                "sft": section}).sft


def test_lora_spec_maps_to_the_users_swift_arguments():
    argv = swift.sft_argv(_sft(LORA1), model="/models/Qwen3-4B", dtype="bfloat16", train_jsonl="t.jsonl",
                          val_jsonl="v.jsonl", output_dir="out")
    got = _pairs(argv)
    expected = {"model": ["/models/Qwen3-4B"], "tuner_type": ["lora"], "torch_dtype": ["bfloat16"], "num_train_epochs": ["1.0"],
                "per_device_train_batch_size": ["4"], "gradient_accumulation_steps": ["4"], "learning_rate": ["0.0001"],
                "lr_scheduler_type": ["cosine"], "max_grad_norm": ["1.0"], "weight_decay": ["0.01"], "lora_rank": ["16"],
                "lora_alpha": ["32.0"], "lora_dropout": ["0.01"], "target_modules": ["all-linear"], "max_length": ["10240"],
                "loss_scale": ["default"], "model_type": ["qwen3"], "template": ["qwen3_nothinking"], "seed": ["42"],
                "eval_steps": ["10"], "save_steps": ["10"], "attn_impl": ["flash_attention_2"], "packing": ["true"],
                "gradient_checkpointing": ["true"], "truncation_strategy": ["delete"], "val_dataset": ["v.jsonl"]}
    assert {k: got.get(k) for k in expected} == expected
    assert "max_steps" not in got, "epochs, not steps"
    full = _pairs(swift.sft_argv(_sft({"backend": "swift", "max_steps": 30, "train_on": "last_assistant", "truncation": "left",
                                       "lora": None, "schedule": "constant"}),
                                 model="m", dtype="float32", train_jsonl="t", val_jsonl=None, output_dir="o"))
    assert full["tuner_type"] == ["full"] and full["max_steps"] == ["30"] and "lora_rank" not in full
    assert full["loss_scale"] == ["last_round"] and full["truncation_strategy"] == ["left"]
    assert full["lr_scheduler_type"] == ["constant_with_warmup"] and full["eval_strategy"] == ["no"]


def test_sft_backend_selects_the_swift_runner_and_dry_run_prints_both_commands():
    spec = Spec.model_validate({"name": "t", "data": {"synthetic": {"num_records": 8}}, "model": {"path": "/models/q"}, "sft": LORA1})
    runner = load_runner("sft", spec)
    assert runner is swift
    text = runner.describe(spec.sft, spec)
    lines = text.splitlines()
    assert lines[0].startswith(str(ROOT / ".venv-swift/bin/swift") + " sft --model /models/q --tuner_type lora")
    assert " export --adapters '<work>/swift/checkpoint-<last>' --merge_lora true --output_dir '<out>/model'" in lines[1]


PARSE = textwrap.dedent("""
    import json, sys
    from transformers import HfArgumentParser
    from swift.utils.utils import _patch_get_type_hints
    from swift.arguments import SftArguments, ExportArguments
    out = {}
    for name, cls, argv in (("sft", SftArguments, json.loads(sys.argv[1])), ("export", ExportArguments, json.loads(sys.argv[2]))):
        with _patch_get_type_hints():
            parser = HfArgumentParser([cls])
        ns = parser.parse_args(argv)  # exits 2 on an unknown argument or a bad value/choice
        out[name] = {k: v for k, v in vars(ns).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    print(json.dumps(out))
""")


@pytest.mark.slow  # importing swift takes ~30 s per process
@pytest.mark.skipif(not SWIFT_PY.is_file(), reason=".venv-swift absent (bash scripts/setup-swift-venv.sh: ms-swift 4.6.0 on CPU torch, ~11 min)")
@pytest.mark.parametrize("section", [LORA1, {"backend": "swift", "max_steps": 20, "truncation": "right", "train_on": "last_assistant",
                                             "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}, "schedule": "constant"},
                                     {"backend": "swift", "max_steps": 20}], ids=["hardtry-lora1", "lora-list", "full"])
def test_swifts_own_parser_accepts_the_generated_arguments(section):
    sft = _sft(section)
    argv = swift.sft_argv(sft, model="/models/q", dtype="bfloat16", train_jsonl="/w/t.jsonl", val_jsonl="/w/v.jsonl", output_dir="/w/swift")
    export = swift.export_argv("/w/swift/checkpoint-20", "/o/model")
    r = subprocess.run([str(SWIFT_PY), "-c", PARSE, json.dumps(argv), json.dumps(export)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    parsed = json.loads(r.stdout.strip().splitlines()[-1])
    s = parsed["sft"]
    assert s["tuner_type"] == ("lora" if sft.lora else "full")
    assert s["gradient_accumulation_steps"] == sft.grad_accum and s["per_device_train_batch_size"] == sft.batch_size
    assert s["max_length"] == sft.max_length and s["truncation_strategy"] == sft.truncation
    assert s["learning_rate"] == pytest.approx(sft.lr) and s["add_version"] is False
    if sft.epochs is not None:
        assert s["num_train_epochs"] == pytest.approx(sft.epochs)
    else:
        assert s["max_steps"] == sft.max_steps
    if sft.lora:
        assert s["lora_rank"] == sft.lora.r and s["lora_alpha"] == pytest.approx(sft.lora.alpha)
        targets = sft.lora.target_modules
        assert s["target_modules"] == ([targets] if isinstance(targets, str) else targets)
    assert parsed["export"]["merge_lora"] is True and parsed["export"]["adapters"] == ["/w/swift/checkpoint-20"]


@pytest.mark.slow
def test_an_unknown_swift_argument_fails_swifts_parser():
    if not SWIFT_PY.is_file():
        pytest.skip(".venv-swift absent (bash scripts/setup-swift-venv.sh)")
    argv = swift.sft_argv(_sft({"backend": "swift", "swift": {"extra_args": {"lora_rnk": 8}}}), model="m", dtype="float32",
                          train_jsonl="t", val_jsonl=None, output_dir="o")
    r = subprocess.run([str(SWIFT_PY), "-c", PARSE, json.dumps(argv), json.dumps(swift.export_argv("c", "o"))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "lora_rnk" in r.stderr


STAND_IN = """#!{python}
# a stand-in for `swift`: writes what swift sft / swift export write
import json, shutil, sys
from pathlib import Path
args = sys.argv[1:]
get = lambda k: args[args.index("--" + k) + 1]
if args[0] == "sft":
    out = Path(get("output_dir")); out.mkdir(parents=True)
    assert Path(get("dataset")).read_text().count("\\n") > 0
    with open(out / "logging.jsonl", "w") as f:
        for step in (1, 2):
            f.write(json.dumps({{"loss": 2.0 / step, "grad_norm": 1.5, "learning_rate": 1e-4, "global_step/max_steps": f"{{step}}/2"}}) + "\\n")
        f.write(json.dumps({{"eval_loss": 0.9, "global_step/max_steps": "2/2"}}) + "\\n")
    shutil.copytree(get("model"), out / "checkpoint-2")
    (out / "checkpoint-2" / "optimizer.pt").write_text("state")
elif args[0] == "export":
    shutil.copytree(get("adapters"), get("output_dir"), ignore=shutil.ignore_patterns("optimizer.pt"))
    Path(get("output_dir"), "exported").write_text("merged")
"""


@pytest.mark.parametrize("lora", [None, {"r": 4}], ids=["full", "lora"])
def test_launch_registers_the_model_and_swifts_metrics(make_ctx, tmp_path, null_tracker, lora):
    exe = tmp_path / "swift"
    exe.write_text(STAND_IN.format(python=sys.executable))
    exe.chmod(0o755)
    spec = {"data": {"synthetic": {"num_records": 12, "seed": 0}, "test_size": 0.25},
            "model": {"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400}, "device": "cpu"},
            "sft": {"backend": "swift", "max_steps": 2, "warmup_steps": 0, "lora": lora, "swift": {"executable": str(exe)}}}
    data = make_ctx("convert", spec, name="data")
    out = convert.run(data.spec.data, data).outputs
    ctx = make_ctx("sft", spec, inputs={"convert.train": out["train"], "convert.test": out["test"]})
    result = swift.run(ctx.spec.sft, ctx)
    model = result.outputs["model"]
    assert (model / "config.json").is_file() and not (model / "optimizer.pt").exists()
    assert (model / "exported").exists() == (lora is not None), "LoRA goes through swift export --merge_lora"
    losses = [(s, v) for k, v, s in null_tracker.metrics if k == "sft/loss"]
    assert losses[:2] == [(1, 2.0), (2, 1.0)]
    assert result.metrics == {"sft/final_loss": 1.5, "sft/eval_loss": 0.9}
    assert null_tracker.tags["sft.swift_command"].startswith(f"{exe} sft --model ")
    assert result.info["train_examples"] == 9


def test_missing_swift_executable_is_a_usage_error(make_ctx, tmp_path):
    from registry.errors import UsageError

    ctx = make_ctx("sft", {"data": {"synthetic": {"num_records": 8}}, "model": {"tiny": {}},
                           "sft": {"backend": "swift", "swift": {"executable": str(tmp_path / "nope")}}},
                   inputs={"convert.train": tmp_path / "x.parquet"})
    with pytest.raises(UsageError, match="setup-swift-venv.sh"):
        swift.run(ctx.spec.sft, ctx)
