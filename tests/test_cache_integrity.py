"""The cache never serves, and a rerun never resumes from, content it did not verify (issue 16):
a byte flipped in any cached output or in any resume state is recomputed, and the recomputed
outputs carry the digests of the clean run (every stage here is deterministic on CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from registry.cli import main

pytestmark = pytest.mark.slow

TINY = """\
experiment: integrity
data: {synthetic: {num_records: 40, seed: 0}, max_samples: 40, test_size: 0.2}
model:
  tiny: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 400, seed: 0}
  device: cpu
  cpu_threads: 1
reward: {function: think_tool_call}
sft: {max_steps: 3, batch_size: 4, format_samples: 0, save_every: 2, eval_every: 3, warmup_steps: 1}
train:
  backend: builtin
  rollout: {n: 2, max_response_length: 16, max_prompt_length: 512}
  optimizer: {lr: 1.0e-2}
  algorithm: {use_kl_loss: true}
  train_batch_size: 2
  ppo_mini_batch_size: 2
  total_training_steps: 3
  save_freq: 2
  test_freq: -1
merge: {log_mode: copy}
eval: {backend: builtin, repeats: 1, max_samples: 4, max_new_tokens: 16}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory, _store_template):
    """One clean run of the whole tiny pipeline; each test corrupts something and reruns, which
    restores a clean-equivalent state for the next one."""
    tmp = tmp_path_factory.mktemp("integrity")
    (tmp / "specs").mkdir()
    (tmp / "specs" / "tiny.yaml").write_text(TINY)
    shutil.copy(_store_template, tmp / "mlflow.db")
    mp = pytest.MonkeyPatch()
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    for k, v in {"MLFLOW_TRACKING_URI": uri, "RLREG_SPECS_DIR": str(tmp / "specs"), "RLREG_HOME": str(tmp / "home")}.items():
        mp.setenv(k, v)
    mp.delenv("MLFLOW_RUN_ID", raising=False)
    client = mlflow.MlflowClient(uri)
    clean = run_tiny()
    yield {"client": client, "home": tmp / "home", "clean": clean, "digests": digests(client, clean)}
    mp.undo()


def run_tiny(*args) -> dict:
    r = CliRunner().invoke(main, ["run", "tiny", "--json", *args])
    assert r.exit_code == 0, r.output[-3000:]
    return json.loads(r.stdout[r.stdout.index("{"):])


def digests(client, summary) -> dict[str, str]:
    """Recorded output digests; for merge, of the content without the manifest's ``source`` (the
    absolute path of the train run it read, which differs once train was recomputed)."""
    out = {}
    for s in summary["stages"]:
        for name, entry in json.loads(client.get_run(s["run_id"]).data.tags["rlreg.outputs"]).items():
            out[f"{s['stage']}.{name}"] = entry["digest"] if s["stage"] != "merge" else _merge_digest(Path(entry["path"]))
    return out


def _merge_digest(path: Path) -> str:
    from registry.hashing import sha256_file, sha256_json

    model = path if path.is_dir() else path.parent
    manifest = json.loads((model / "manifest.json").read_text())
    manifest.pop("source", None)
    files = {p.name: sha256_file(p) for p in sorted(model.iterdir()) if p.is_file() and p.name != "manifest.json"}
    return sha256_json({"manifest": manifest, "files": files, "is_dir": path.is_dir()})


def flip(path: Path) -> None:
    """Flip one byte in the middle of the file (of a directory's largest file), size unchanged."""
    if path.is_dir():
        path = max((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


def stage(summary, name) -> dict:
    return next(s for s in summary["stages"] if s["stage"] == name)


CACHED_FILES = {
    "convert.train": "",  # the parquet file itself
    "sft.model": "model.safetensors",
    "train.model": "model.safetensors",
    "train.checkpoints": "global_step_3/model/model.safetensors",
    "merge.model": "model.safetensors",
    "merge.manifest": "",
    "eval.predictions": "",
}


@pytest.mark.parametrize("output", list(CACHED_FILES))
def test_flipped_byte_in_a_cached_output_is_recomputed_to_the_clean_result(store, output):
    name, rel = output.split(".")[0], CACHED_FILES[output]
    produced = Path(stage(store["clean"], name)["outputs"][output.split(".")[1]])
    flip(produced / rel if rel else produced)
    again = run_tiny()
    assert stage(again, name)["cache_hit"] is None, f"{output}: a corrupted output was served"
    assert digests(store["client"], again) == store["digests"]
    # the published outputs are never hard links to the resume state (flipping one would flip both)
    published = [p for s in again["stages"] for p in map(Path, s["outputs"].values())]
    for p in published:
        for f in ([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                assert f.stat().st_nlink == 1, f
    store["clean"] = again  # the next case flips what is served now


def crash_after_checkpoint(monkeypatch, module, step: int) -> None:
    """Let ``module.save_checkpoint`` write checkpoint ``step``, then die as a crash would."""
    real = module.save_checkpoint

    def saving_then_crashing(*args, **kwargs):
        path = real(*args, **kwargs)
        if args[1] == step:
            raise RuntimeError("injected crash")
        return path

    monkeypatch.setattr(module, "save_checkpoint", saving_then_crashing)


def work_dir(store, stage_name: str) -> Path:
    (key,) = [p for p in (store["home"] / "work" / stage_name).iterdir()]
    return key


RESUME_STATE = {
    "train:model": ("train", "checkpoints/global_step_2/model/model.safetensors"),
    "train:trainer_state": ("train", "checkpoints/global_step_2/trainer_state.pt"),
    "train:rng": ("train", "checkpoints/global_step_2/rng.json"),
    "train:manifest": ("train", "checkpoints/global_step_2/rlreg-manifest.json"),
    "train:history_digests": ("train", "checkpoints-history.json"),
    "train:history": ("train", "metrics_history.jsonl"),
    "sft:checkpoint": ("sft", "sft_checkpoints/step_2.pt"),
    "sft:digest": ("sft", "sft_checkpoints/step_2.sha256"),
}


@pytest.mark.parametrize("kind", list(RESUME_STATE))
def test_flipped_byte_in_resume_state_is_discarded_and_the_rerun_starts_over(store, kind, monkeypatch):
    import runners.sft
    import runners.train.loop

    name, rel = RESUME_STATE[kind]
    module = runners.sft if name == "sft" else runners.train.loop
    with monkeypatch.context() as m:
        crash_after_checkpoint(m, module, 2)
        r = CliRunner().invoke(main, ["run", "tiny", "--force", name])
        assert r.exit_code == 1 and "injected crash" in r.output, r.output[-2000:]
    target = work_dir(store, name) / rel
    assert target.is_file()
    flip(target)
    # the cached (clean) result of this stage must not simply be served: make it unavailable
    shutil.rmtree(Path(stage(store["clean"], name)["outputs"]["model"]).parent)
    again = run_tiny()
    child = store["client"].get_run(stage(again, name)["run_id"])
    assert stage(again, name)["cache_hit"] is None
    assert "rlreg.resume_discarded" in child.data.tags, kind
    assert digests(store["client"], again) == store["digests"]
    store["clean"] = again  # later tests flip the outputs this run published


def test_force_recomputes_from_scratch_not_from_the_final_checkpoint(store):
    forced = run_tiny("--force", "train")
    train = stage(forced, "train")
    tags = store["client"].get_run(train["run_id"]).data.tags
    assert train["cache_hit"] is None and tags.get("rlreg.resumed_from_step") is None
    assert digests(store["client"], forced) == store["digests"]
    assert all(s["cache_hit"] for s in forced["stages"] if s["stage"] != "train")
    store["clean"] = forced
