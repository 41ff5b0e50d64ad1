"""Static guarantees: no shell strings built from spec values, YAML always safe-loaded,
secret-looking spec keys never reach MLflow params."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for pkg in ("registry", "runners", "analysis") for p in (ROOT / pkg).rglob("*.py"))


def calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def dotted(func) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_shell_no_unsafe_yaml(path):
    for node in calls(path):
        name = dotted(node.func)
        for kw in node.keywords:
            if kw.arg == "shell" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                pytest.fail(f"{path}:{node.lineno}: shell=True (pass an argv list)")
        assert name not in ("os.system", "os.popen", "eval", "exec"), f"{path}:{node.lineno}: {name}"
        if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
            pytest.fail(f"{path}:{node.lineno}: {name} (use yaml.safe_load)")


def test_secret_keys_redacted_everywhere():
    from registry.flatten import is_secret_key

    for key in ["hf_token", "train.verl.api_key", "eval.bfcl.OPENAI_API_KEY", "db.password", "x.secret"]:
        assert is_secret_key(key), key
    for key in ["max_new_tokens", "rollout.max_response_length", "eval.max_tokens", "data.tokenizer"]:
        assert not is_secret_key(key), key
