"""Load a policy (model + tokenizer) and resolve the spec's ``model`` section to a local HF dir."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from registry.errors import InputDataError, UsageError
from registry.spec.model import ModelSpec
from runners.common.integrity import manifest_problem, write_manifest
from runners.modeling.builder import build_tiny_model
from runners.modeling.chat_template import CHAT_TEMPLATE, _messages_list, _tools_list

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def pick_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("model.device is 'cuda' but no CUDA GPU is visible (set model.device: auto or cpu)")
    return device


def apply_cpu_threads(model_spec: ModelSpec | None) -> None:
    """``torch.set_num_threads(model.cpu_threads)`` when set and the model runs on CPU."""
    import torch

    if model_spec is not None and model_spec.cpu_threads and pick_device(model_spec.device) == "cpu":
        torch.set_num_threads(model_spec.cpu_threads)


def load_model(
    path: str | Path, dtype: str = "float32", device: str = "auto", *, trust_remote_code: bool = False
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local HF dir, on ``device`` in ``dtype``, in eval mode.
    The tokenizer pads on the left (batched generation) and always has a pad token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = validate_model_dir(Path(path))
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    model.to(pick_device(device))
    model.eval()
    return model, tokenizer


def validate_model_dir(path: Path) -> Path:
    """The directory if it holds a config, weights and a tokenizer; else a clear error."""
    fix = "point model.path at a Hugging Face model directory (config.json, *.safetensors, tokenizer files)"
    if not path.is_dir():
        raise InputDataError(f"{path}: model directory does not exist ({fix})")
    if not (path / "config.json").is_file():
        raise InputDataError(f"{path}: no config.json, so this is not a model directory ({fix})")
    if not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        raise InputDataError(f"{path}: no weights (*.safetensors or pytorch_model*.bin) ({fix})")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputDataError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) ({fix})")
    return path


def iter_parquet_records(parquet: Path) -> Iterator[dict]:
    """Rows of a convert-stage parquet as dicts with ``messages`` (prompt), ``ground_truth`` and
    ``tools`` (a list or None). Raises InputDataError naming the file and row on a bad row."""
    from runners.common.verl_parquet import read_verl_parquet

    frame = read_verl_parquet(parquet, "the sft stage / tiny-model tokenizer")
    for index, row in enumerate(frame.itertuples(index=False)):
        reward_model = row.reward_model if isinstance(row.reward_model, dict) else {}
        ground_truth = reward_model.get("ground_truth")
        if not isinstance(ground_truth, str):
            raise InputDataError(f"{parquet}: row {index}: reward_model.ground_truth is not a string")
        extra = getattr(row, "extra_info", None)
        tools_raw = extra.get("tools") if isinstance(extra, dict) else None
        try:
            tools = _tools_list(tools_raw)
        except (ValueError, TypeError) as exc:
            raise InputDataError(f"{parquet}: row {index}: extra_info.tools is not a JSON list ({exc})") from exc
        yield {"messages": _messages_list(row.prompt), "ground_truth": ground_truth, "tools": tools}


def render_record_text(record: dict) -> str:
    """A record's full conversation (prompt + ground-truth answer) rendered with the tiny chat
    template, without a tokenizer: the text a tiny model's tokenizer is trained on."""
    from transformers.utils.chat_template_utils import render_jinja_template

    messages = record["messages"] + [{"role": "assistant", "content": record["ground_truth"]}]
    rendered = render_jinja_template([messages], tools=record.get("tools"), chat_template=CHAT_TEMPLATE)
    text = rendered[0] if isinstance(rendered, tuple) else rendered
    return text[0] if isinstance(text, list) else text


def texts_from_parquet(parquet: Path) -> list[str]:
    return [render_record_text(r) for r in iter_parquet_records(parquet)]


def resolve_base_model(
    model_spec: ModelSpec, *, train_parquet: Path | None, cache_dir: Path,
    resolve_path: Callable[[str], Path],
) -> Path:
    """The local HF directory of the spec's base model.

    ``path``: that directory, validated. ``tiny``: built into ``cache_dir`` from the train
    parquet's conversations, keyed by the tiny spec and the parquet's content, and reused when
    already there (a rerun of the stage does not rebuild it).
    """
    if model_spec.path is not None:
        return validate_model_dir(resolve_path(model_spec.path))
    assert model_spec.tiny is not None
    if train_parquet is None:
        raise UsageError("model.tiny trains its tokenizer on the convert stage's train split: add the convert stage")
    digest = hashlib.sha256(json.dumps(model_spec.tiny.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(Path(train_parquet).read_bytes())
    out = Path(cache_dir) / f"tiny-base-{digest.hexdigest()[:16]}"
    if out.is_dir():
        problem = manifest_problem(out)
        if problem is None:
            return out
        print(f"rebuilding the tiny base model: {problem}", file=sys.stderr)
        shutil.rmtree(out)
    built = build_tiny_model(model_spec.tiny, texts_from_parquet(Path(train_parquet)), out)
    write_manifest(built)  # the next reuse checks it: a work dir is mutable state
    return built
