"""Per-entry eval results: the ``eval/entries.json`` MLflow table every eval stage logs.

One row per entry × repeat. ``entry_id`` is the record's own id (the convert split's
``extra_info.index``, BFCL's test id such as ``simple_python_3``), so the same prompt has the same id
in every run that evaluates the same set: a paired comparison (``analysis.paired``) joins two runs on
it, also runs evaluated days apart. ``prompt_sha`` (a digest of the prompt text) lets the pairing
refuse ids that name different prompts. 0/1 outcomes are floats (``correct`` is what
``eval/accuracy`` averages).

BFCL's own files are the source for the BFCL backend: ``result/<model>/<group>/BFCL_v*_<category>_result.json``
(one JSON line per entry: ``id``, ``result``) and ``score/<model>/<group>/BFCL_v*_<category>_score.json``
(a header line, then one line per FAILED entry: ``id``, ``valid: false``, ``error``, ``error_type``,
``model_result_raw``; bfcl_eval's ``save_eval_results``). An entry without a failure line in a scored
category is valid.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ARTIFACT = "eval/entries.json"
RESULT_RE = re.compile(r"^BFCL_v\d+_(?P<category>.+)_result\.json$")
SCORE_RE = re.compile(r"^BFCL_v\d+_(?P<category>.+)_score\.json$")


def prompt_sha(prompt: Any) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def builtin_rows(records: Sequence[Any], prompts: Sequence[str], generations: Sequence[Any], scores: Sequence[Any],
                 rewards: Sequence[float], repeat: int, seed: int) -> list[dict[str, Any]]:
    """Rows of one builtin repeat (``records``/``prompts``/``generations``/``scores`` aligned)."""
    return [
        {"entry_id": str(rec.id), "repeat": repeat, "seed": seed, "correct": float(s.score), "reward": float(rw),
         "format_valid": float(s.format_valid), "tool_name_correct": float(s.tool_name_correct),
         "args_correct": float(s.args_correct), "error": s.error, "response": g.text, "parsed_calls": s.calls,
         "expected": s.expected, "response_tokens": g.num_tokens, "prompt": prompt, "prompt_sha": prompt_sha(prompt),
         "category": rec.category or ""}
        for rec, prompt, g, s, rw in zip(records, prompts, generations, scores, rewards)
    ]


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line (killed writer) is one lost entry, not a lost repeat
        if isinstance(value, dict):
            out.append(value)
    return out


def _failures(score_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{category: {entry id: failure line}}`` for every category BFCL scored."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(score_dir.rglob("*_score.json")):
        m = SCORE_RE.match(path.name)
        if not m:
            continue
        lines = _json_lines(path)
        out[m.group("category")] = {str(x["id"]): x for x in lines[1:] if "id" in x}
    return out


def bfcl_rows(root: Path, repeat: int) -> list[dict[str, Any]]:
    """Rows of one BFCL repeat from its ``result/`` and ``score/`` directories."""
    failures = _failures(root / "score")
    rows = []
    for path in sorted((root / "result").rglob("*_result.json")):
        m = RESULT_RE.match(path.name)
        if not m:
            continue
        category = m.group("category")
        scored = category in failures
        for line in _json_lines(path):
            if "id" not in line:
                continue
            eid = str(line["id"])
            fail = failures.get(category, {}).get(eid)
            response = line.get("result")
            rows.append({
                "entry_id": eid, "repeat": repeat, "category": category,
                "correct": (0.0 if fail else 1.0) if scored else None,
                "valid": (not fail) if scored else None,
                "error_type": (fail or {}).get("error_type", ""),
                "error": (fail or {}).get("error", ""),
                "response": response if isinstance(response, str) else json.dumps(response, ensure_ascii=False),
                # BFCL's prompt is fixed per test id in its data files: the id names the prompt
                "prompt_sha": prompt_sha(f"bfcl:{eid}"),
            })
    return rows


def bfcl_files(root: Path) -> list[tuple[Path, str]]:
    """BFCL's result and score JSON files of one repeat, with their path relative to ``root``
    (logged as artifacts: the work dir is wiped by the next run)."""
    files = []
    for sub in ("result", "score"):
        base = root / sub
        if base.is_dir():
            files += [(p, str(p.parent.relative_to(root))) for p in sorted(base.rglob("*.json"))]
    return files
