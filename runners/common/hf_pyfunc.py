"""MLflow pyfunc model around a Hugging Face causal-LM directory (models-from-code file).

MLflow copies this file into the logged model and executes it at load time
(``mlflow.models.set_model`` below), so ``mlflow.pyfunc.load_model`` needs no rlreg import:
only mlflow, torch and transformers. Keep it self-contained (no ``registry``/``runners`` imports).
Why not the transformers flavor: ``mlflow.transformers.log_model`` works offline only with
transformers <= 5.20.2 (domain.md §7).

Artifacts: ``hf_model`` (a copy of the directory) or ``reference`` (``{"path": <dir>}``) +
``manifest`` (sha256/size of every file). A reference is checked at load time: every file
must exist with its manifest size (``model_config={"verify_sha256": True}`` also hashes them).

Input: strings, each a prompt sent as-is or the JSON of a chat ``messages`` list (rendered with
the tokenizer's chat template and a generation prompt); a DataFrame's first column likewise. Params: ``max_new_tokens`` (64),
``temperature`` (0 = greedy). Output: the generated text of each row (special tokens dropped).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


def _entries(manifest: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(path, size, sha256) per file: ``{"files": {path: {size, sha256}}}`` (builtin merge) or
    ``{"files": [{path, bytes, sha256}]}`` (verl merge)."""
    files = manifest.get("files", {})
    if isinstance(files, dict):
        return [(rel, e["size"], e["sha256"]) for rel, e in files.items()]
    return [(e["path"], e["bytes"], e["sha256"]) for e in files]


def _verify(model_dir: Path, manifest: dict[str, Any], sha256: bool) -> None:
    for rel, size, expected in _entries(manifest):
        path = model_dir / rel
        if rel == "manifest.json":
            continue
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in the model's manifest but missing (the referenced model moved?)")
        if path.stat().st_size != size:
            raise ValueError(f"{path}: size {path.stat().st_size} != manifest {size} (the file changed)")
        if sha256:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            if digest.hexdigest() != expected:
                raise ValueError(f"{path}: sha256 differs from the manifest (the file changed)")


def model_dir_from(artifacts: dict[str, str], verify_sha256: bool = False) -> Path:
    """The HF directory of a loaded model: the copied one, or the checked reference."""
    if "hf_model" in artifacts:
        return Path(artifacts["hf_model"])
    reference = json.loads(Path(artifacts["reference"]).read_text())
    manifest = json.loads(Path(artifacts["manifest"]).read_text())
    model_dir = Path(reference["path"])
    _verify(model_dir, manifest, verify_sha256)
    return model_dir


class HFCausalLM(PythonModel):
    def load_context(self, context):
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = context.model_config or {}
        model_dir = model_dir_from(context.artifacts, bool(config.get("verify_sha256")))
        verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()  # no "Loading weights" bar inside a load
        transformers.logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.logging.enable_progress_bar()
        self.model.eval()

    def _prompts(self, model_input: Any) -> list[str]:
        rows: list[Any]
        if hasattr(model_input, "to_dict"):  # DataFrame
            column = "messages" if "messages" in model_input.columns else "prompt"
            rows = [r for r in model_input[column].tolist()] if column in model_input.columns else \
                model_input.iloc[:, 0].tolist()
        elif isinstance(model_input, dict):
            value = model_input.get("messages", model_input.get("prompt"))
            rows = value if isinstance(value, list) and not (value and isinstance(value[0], dict)) else [value]
        elif isinstance(model_input, str):
            rows = [model_input]
        else:
            rows = list(model_input)
        prompts = []
        for row in rows:
            if isinstance(row, str) and row.lstrip().startswith("["):
                try:
                    row = json.loads(row)
                except ValueError:
                    pass
            if isinstance(row, list):
                row = self.tokenizer.apply_chat_template(row, tokenize=False, add_generation_prompt=True)
            prompts.append(str(row))
        return prompts

    # DataFrame: a hint MLflow infers no signature from (a list[str] hint would replace the explicit
    # signature and drop its params schema); schema enforcement hands a DataFrame anyway.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> list[str]:
        import torch

        params = params or {}
        max_new_tokens = int(params.get("max_new_tokens", 64))
        temperature = float(params.get("temperature", 0.0))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        outputs = []
        for prompt in self._prompts(model_input):
            ids = self.tokenizer(prompt, return_tensors="pt").to(self.model.device)
            kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad}
            kwargs.update({"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False})
            with torch.no_grad():
                out = self.model.generate(**ids, **kwargs)
            new = out[0, ids["input_ids"].shape[1]:]
            outputs.append(self.tokenizer.decode(new, skip_special_tokens=True))
        return outputs


mlflow.models.set_model(HFCausalLM())
