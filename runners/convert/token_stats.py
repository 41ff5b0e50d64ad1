"""Token-length statistics of the converted rows (prompt rendered with the chat template and the
record's tools, as the trainer will see it; response = the ground-truth answer).

Researchers pick ``max_prompt_length`` / ``max_response_length`` from these (the user's verl7 uses
9216 / 1024); a p95 near the limit means truncated prompts or clipped answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.errors import InputDataError


class TokenStats:
    def __init__(self, tokenizer_dir: Path):
        if not (tokenizer_dir / "tokenizer_config.json").is_file() and not (tokenizer_dir / "tokenizer.json").is_file():
            raise InputDataError(
                f"{tokenizer_dir}: not a tokenizer directory (no tokenizer.json / tokenizer_config.json); "
                "set `data.tokenizer` to a local HF model or tokenizer dir, or remove it to skip token stats"
            )
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.lengths: dict[str, dict[str, list[int]]] = {}
        self.template_fallbacks = 0

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompt_text(self, prompt: list[dict[str, str]], tools: str | None) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            from jinja2.exceptions import TemplateError

            try:
                return self.tokenizer.apply_chat_template(
                    prompt, tools=json.loads(tools) if tools else None, add_generation_prompt=True, tokenize=False
                )
            except (TemplateError, ValueError, TypeError, KeyError):
                pass  # a template that rejects a role or the tools: count plain text instead
        self.template_fallbacks += 1
        return "\n".join(m["content"] for m in prompt)

    def add(self, split: str, prompt: list[dict[str, str]], ground_truth: str, tools: str | None) -> None:
        per_split = self.lengths.setdefault(split, {"prompt": [], "response": []})
        per_split["prompt"].append(self._count(self._prompt_text(prompt, tools)))
        per_split["response"].append(self._count(ground_truth))

    def metrics(self) -> dict[str, float]:
        import numpy as np

        out: dict[str, Any] = {"convert/token_stats_template_fallbacks": self.template_fallbacks}
        for split, kinds in self.lengths.items():
            for kind, values in kinds.items():
                arr = np.asarray(values, dtype=np.float64)
                if not len(arr):
                    continue
                prefix = f"convert/{split}/{kind}_tokens"
                out[f"{prefix}_mean"] = float(arr.mean())
                out[f"{prefix}_p50"] = float(np.percentile(arr, 50))
                out[f"{prefix}_p95"] = float(np.percentile(arr, 95))
                out[f"{prefix}_max"] = float(arr.max())
        return out
