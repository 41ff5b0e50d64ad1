"""Resume reproduces an uninterrupted run even when the crash tore a batch apart: every sample
draws from its own generator seeded from (seed, sample_idx), so re-batching the missing samples
changes nothing."""

from __future__ import annotations

import pytest
import torch
from test_generate_runner import _run, _spec, prompts_file  # noqa: F401 - fixtures and helpers

import runners.generate.writer as writer_mod
from runners.generate import DATA_FILE, run
from runners.generate.decode import sample, sample_generators
from runners.generate.writer import read_jsonl


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_per_sample_generators_do_not_depend_on_the_batch():
    logp = torch.log_softmax(torch.randn(4, 50, generator=torch.Generator().manual_seed(0)), -1)
    together = sample(logp, generators=sample_generators(7, [10, 11, 12, 13]))
    alone = torch.stack([sample(logp[i:i + 1], generators=sample_generators(7, [10 + i]))[0] for i in range(4)])
    assert together.tolist() == alone.tolist()
    assert sample_generators(7, [1])[0].initial_seed() != sample_generators(8, [1])[0].initial_seed()
    assert sample_generators(7, [1])[0].initial_seed() != sample_generators(7, [2])[0].initial_seed()


def test_crash_in_the_middle_of_a_batch_then_resume_equals_an_uninterrupted_run(
        make_ctx, tiny_model_dir, prompts_file, monkeypatch):  # noqa: F811
    spec = _spec(tiny_model_dir, prompts_file, batch_size=3, max_new_tokens=8, temperature=1.0)
    reference, _ = _run(make_ctx, spec, name="whole")

    real_append, data_writes = writer_mod._append, []

    def torn_second_batch(path, rows):
        rows = list(rows)
        if path.name == DATA_FILE:
            data_writes.append(1)
            if len(data_writes) == 2:  # batch [3, 4, 5]: sample 3 reaches the disk, then the crash
                real_append(path, rows[:1])
                raise RuntimeError("simulated crash mid-batch")
        real_append(path, rows)

    monkeypatch.setattr(writer_mod, "_append", torn_second_batch)
    ctx = make_ctx("generate", spec, name="torn")
    with pytest.raises(RuntimeError, match="mid-batch"):
        run(ctx.spec.generate, ctx)
    assert [r["sample_idx"] for r in read_jsonl(ctx.work_dir / DATA_FILE)] == [0, 1, 2, 3]
    monkeypatch.setattr(writer_mod, "_append", real_append)
    resumed = run(ctx.spec.generate, ctx)  # re-batches the missing [4, 5, 6] as one batch
    assert resumed.metrics["generate/resumed_samples"] == 4 and resumed.metrics["generate/new_samples"] == 3
    assert read_jsonl(resumed.outputs["data"]) == read_jsonl(reference.outputs["data"])
    got = {d["sample_idx"]: d for d in read_jsonl(resumed.outputs["diagnostics"])}
    want = {d["sample_idx"]: d for d in read_jsonl(reference.outputs["diagnostics"])}
    assert sorted(got) == list(range(7))
    for idx in want:  # same tokens → same diagnostics (float noise of another batch shape aside)
        assert got[idx]["num_tokens"] == want[idx]["num_tokens"]
        assert got[idx]["alpha_mean"] == pytest.approx(want[idx]["alpha_mean"], abs=1e-5)
