"""The q* Python API: the runnable example in docs/generate.md, executed on two tiny models that
share a tokenizer, and the API's shapes and checks."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from runners.generate.sampler import QStarSampler, create_optimal_sampling_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "generate.md"


@pytest.fixture(scope="module")
def target_dir(tiny_model_dir, tmp_path_factory):
    """A perturbed copy of the tiny model saved as its own HF directory (same tokenizer)."""
    from registry.spec.generate import PerturbSpec
    from runners.generate.models import perturbed_copy
    from runners.modeling import load_model

    model, tok = load_model(tiny_model_dir, "float32", "cpu")
    out = tmp_path_factory.mktemp("qstar-target")
    perturbed_copy(model, PerturbSpec(seed=3, scale=2.0)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _example() -> str:
    section = DOC.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_example_runs(tiny_model_dir, target_dir, monkeypatch, capsys):
    monkeypatch.setenv("QSTAR_THETA", str(tiny_model_dir))
    monkeypatch.setenv("QSTAR_T", str(target_dir))
    namespace: dict = {}
    exec(compile(_example(), str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own code block
    out = namespace["out"]
    printed = capsys.readouterr().out
    assert printed.count("alpha=") == 2 and "torch.Size([2," in printed
    assert len(out.texts) == 2 and out.alpha.shape == out.ess_ratio.shape and out.alpha.shape[0] == 2
    for row, diag in enumerate(out.diagnostics):
        n = len(diag["tokens"]["alpha"])
        assert n == len(out.token_ids[row]) + int(out.stopped_on_eos[row])
        vals = out.alpha[row, :n]
        assert torch.all((vals >= 0) & (vals <= 1)) and torch.isnan(out.alpha[row, n:]).all()
        # kl_symmetry: both KLs equal per token
        assert diag["kl_theta_mean"] == pytest.approx(diag["kl_t_mean"], rel=1e-3, abs=1e-6)
        assert diag["alpha_mean"] == pytest.approx(float(vals.mean()), abs=1e-5)


def test_one_model_fixed_alpha_and_seeded_output(tiny_model_dir):
    one = create_optimal_sampling_model(tiny_model_dir, None, alpha_method="fixed", fixed_alpha=0.3, device="cpu")
    assert one.model_t is None
    a = one.generate(["hello", "tools please"], max_new_tokens=5, seed=4)
    b = one.generate(["hello", "tools please"], max_new_tokens=5, seed=4)
    assert a.texts == b.texts and a.diagnostics is None
    # q* = π_θ: ESS ratio 1, α as fixed
    finite = a.alpha[~torch.isnan(a.alpha)]
    assert torch.allclose(finite, torch.full_like(finite, 0.3))
    assert torch.allclose(a.ess_ratio[~torch.isnan(a.ess_ratio)], torch.tensor(1.0))
    # a prompt alone in its batch gets the same sample (per-sample generators)
    alone = one.generate(["hello"], max_new_tokens=5, seed=4)
    assert alone.texts[0] == a.texts[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha_method": "nope"}, "alpha_method must be one of"),
    ({"alpha_method": "fixed", "fixed_alpha": 1.5}, "fixed_alpha must be in"),
])
def test_bad_arguments_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QStarSampler(_Stub(), None, None, **kwargs)


def test_entropy_method_and_bad_temperature(tiny_model_dir, target_dir):
    s = create_optimal_sampling_model(tiny_model_dir, target_dir, alpha_method="entropy", device="cpu")
    out = s.generate("a single prompt", max_new_tokens=3, return_diagnostics=True)
    assert len(out.texts) == 1 and math.isfinite(out.diagnostics[0]["alpha_mean"])
    with pytest.raises(ValueError, match="temperature"):
        s.generate(["x"], temperature=0.0)


class _Stub:
    def get_output_embeddings(self):
        return torch.nn.Linear(2, 10)
