"""Per-entry eval results (``eval/entries.json`` on an eval child) read back through MLflow.

The table is logged by every eval stage with ``tracker.log_table`` (MLflow's ``{"columns",
"data"}`` JSON): one row per entry × repeat, ``entry_id`` stable across runs (the record's id),
``repeat``, the 0/1 outcomes (``correct``, and for builtin ``format_valid``, ``tool_name_correct``,
``args_correct``), ``reward``, ``response``, ``prompt_sha`` (a digest of the prompt text: two runs
pair only on entries whose prompt is the same). Read through ``client.download_artifacts`` (the
public API; ``mlflow.load_table`` would read the global tracking URI instead of the client's), so
two runs evaluated days apart — or in different experiments — pair alike.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from analysis import runs as R

ENTRIES_ARTIFACT = "eval/entries.json"


def has_entries(client: Any, run_id: str) -> bool:
    return any(a.path == ENTRIES_ARTIFACT for a in client.list_artifacts(run_id, "eval"))


def load_entries(client: Any, run_id: str) -> list[dict[str, Any]] | None:
    """The rows of ``eval/entries.json`` on ``run_id``, or None when the run has no such table."""
    if not has_entries(client, run_id):
        return None
    with tempfile.TemporaryDirectory(prefix="rlreg-entries-") as tmp:
        path = R.download_artifact(client, run_id, ENTRIES_ARTIFACT, tmp)
        table = json.loads(path.read_text(encoding="utf-8"))
    cols = table.get("columns") or []
    return [dict(zip(cols, row)) for row in table.get("data") or []]


def shared_prompts(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[set[str], int]:
    """Entry ids present in both tables with the same prompt digest, and how many ids were dropped
    because the prompt text differs (different eval sets that reuse ids)."""
    def digests(rows: list[dict[str, Any]]) -> dict[str, str]:
        return {str(r["entry_id"]): str(r.get("prompt_sha") or "") for r in rows}

    da, db = digests(a), digests(b)
    both = set(da) & set(db)
    same = {i for i in both if da[i] == db[i]}
    return same, len(both) - len(same)
