"""No pickle from disk (issue 16): checkpoints in a work dir load with ``weights_only=True`` after
their recorded digest matches, and anything else there is discarded, never executed."""

from __future__ import annotations

from pathlib import Path

import torch


def malicious(marker: Path):
    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return Evil()


def test_planted_pickle_in_a_work_dir_is_never_executed(tmp_path):
    from registry.hashing import sha256_file
    from runners.common.integrity import write_manifest
    from runners.sft.checkpoint import checkpoint_dir, resume_checkpoint
    from runners.train.checkpoint import LATEST_FILE, resume_point

    marker = tmp_path / "pwned"
    demo = tmp_path / "demo.pt"
    torch.save({"x": malicious(marker)}, demo)
    torch.load(demo, weights_only=False)
    assert marker.exists()  # the payload is real: unpickling it runs code
    marker.unlink()

    # sft: a planted step file, even with a matching (forged) digest file
    sft = checkpoint_dir(tmp_path / "sft-work")
    sft.mkdir(parents=True)
    torch.save({"step": 9, "model": malicious(marker)}, sft / "step_9.pt")
    (sft / "step_9.sha256").write_text(sha256_file(sft / "step_9.pt"))
    state, why = resume_checkpoint(tmp_path / "sft-work")
    assert state is None and "not loadable without pickle" in why and not marker.exists()
    assert not list(sft.glob("step_*"))  # discarded

    # train: a planted checkpoint with a forged manifest
    root = tmp_path / "train-work" / "checkpoints"
    step = root / "global_step_1"
    step.mkdir(parents=True)
    torch.save({"step": 1, "optimizer": malicious(marker)}, step / "trainer_state.pt")
    (step / "rng.json").write_text("{}")
    write_manifest(step)
    (root.parent / "checkpoints-history.json").write_text('{"1": "h"}')
    (root / LATEST_FILE).write_text("1")
    got, state, why = resume_point(root, lambda s: "h")
    assert (got, state) == (None, None) and "not loadable without pickle" in why and not marker.exists()
    assert not root.exists()  # discarded: the run starts over

    # without a manifest it is not even opened
    step.mkdir(parents=True)
    torch.save({"step": 1, "optimizer": malicious(marker)}, step / "trainer_state.pt")
    (root / LATEST_FILE).write_text("1")
    got, _, why = resume_point(root, lambda s: "h")
    assert got is None and "no rlreg-manifest.json" in why and not marker.exists()


def test_tiny_base_model_in_a_work_dir_is_rebuilt_when_changed(tmp_path, make_ctx):
    import runners.convert as convert
    from registry.spec.model import ModelSpec
    from runners.modeling import resolve_base_model

    ctx = make_ctx("convert", {"data": {"synthetic": {"num_records": 16, "seed": 0}, "test_size": 0.25}})
    parquet = convert.run(ctx.spec.data, ctx).outputs["train"]
    spec = ModelSpec.model_validate({"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                              "intermediate_size": 64, "vocab_size": 300}})
    first = resolve_base_model(spec, train_parquet=parquet, cache_dir=tmp_path / "work", resolve_path=Path)
    clean = (first / "model.safetensors").read_bytes()
    with open(first / "model.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\xff" * 8)
    again = resolve_base_model(spec, train_parquet=parquet, cache_dir=tmp_path / "work", resolve_path=Path)
    assert again == first and (again / "model.safetensors").read_bytes() == clean


def test_no_pickle_loads_in_the_code():
    root = Path(__file__).resolve().parents[1]
    offenders = [
        f"{p.relative_to(root)}:{i}"
        for d in ("registry", "runners", "analysis")
        for p in sorted((root / d).rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "weights_only=False" in line or line.strip().startswith(("import pickle", "from pickle", "import dill"))
        or "pickle.load" in line
    ]
    assert offenders == []
