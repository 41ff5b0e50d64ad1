"""Build a tiny Qwen2/Llama model + byte-level BPE tokenizer locally (no hub download).

Deterministic: the same ``TinyModelSpec`` and the same texts (in the same order) give
byte-identical ``model.safetensors`` and ``tokenizer.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from registry.spec.model import TinyModelSpec
from runners.modeling.chat_template import CHAT_TEMPLATE

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START, THINK_END = "<think>", "</think>"
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_START, TOOL_RESPONSE_END = "<tool_response>", "</tool_response>"
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Control tokens: skipped by ``decode(skip_special_tokens=True)``.
CONTROL_TOKENS = (PAD_TOKEN, IM_START, IM_END)
# Format tokens: single ids too, but (as in Qwen's tokenizer) not "special", so decoded text keeps
# them and the reward parser can see them.
FORMAT_TOKENS = (THINK_START, THINK_END, TOOL_CALL_START, TOOL_CALL_END, TOOL_RESPONSE_START, TOOL_RESPONSE_END)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE ``tokenizers.Tokenizer`` with the control and format tokens as single ids
    (ids 0..8, in the order above)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    # Exactly Qwen2's pipeline (NFC, its split regex, byte level): transformers' Qwen2Tokenizer
    # rebuilds this pipeline around the saved vocab/merges when it loads the directory, so any
    # other pipeline would tokenize differently after a save/load round trip.
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False) for t in CONTROL_TOKENS] + [
        AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)
    # Declare the format tokens non-special (the trainer registers all of them as special).
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in FORMAT_TOKENS])
    return tok


def hf_tokenizer(tok, model_max_length: int):
    """Wrap a ``tokenizers.Tokenizer`` as a transformers fast tokenizer with the chat template."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def tiny_config(spec: TinyModelSpec, tokenizer):
    """A transformers config for ``spec`` whose vocabulary matches ``tokenizer``."""
    from transformers import LlamaConfig, Qwen2Config

    cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[spec.architecture]
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size or 2 * spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads or spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )


def build_tiny_model(spec: TinyModelSpec, texts: Iterable[str], out_dir: Path) -> Path:
    """Train the tokenizer on ``texts``, initialise a model from ``spec.seed``, and save both as
    a standard HF directory at ``out_dir`` (written to a temp dir, then renamed into place)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    out_dir = Path(out_dir)
    texts = list(texts)
    if not any(texts):
        raise ValueError("build_tiny_model needs at least one non-empty text to train its tokenizer")
    tokenizer = hf_tokenizer(train_tokenizer(texts, spec.vocab_size), spec.max_position_embeddings)
    config = tiny_config(spec, tokenizer)
    # Seeded init that leaves the caller's global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id, do_sample=False,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _declare_tokenizer_class(tmp / "tokenizer_config.json")
        (tmp / "tiny_model_spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _declare_tokenizer_class(path: Path) -> None:
    """Name ``Qwen2Tokenizer`` (whose pipeline this tokenizer was trained with) for every
    architecture, so AutoTokenizer never picks e.g. LlamaTokenizer's Metaspace pipeline."""
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
