"""Regenerate the BFCL score directories next to this file with bfcl-eval's OWN writers
(bfcl-eval 2026.3.23: ``save_eval_results`` writes ``<model>/<group>/BFCL_v4_<category>_score.json``,
``generate_leaderboard_csv`` the ``data_*.csv`` files), exactly as ``bfcl evaluate`` does after
scoring: per category a header line ``{accuracy, correct_count, total_count}`` then one line per
FAILED entry; then the leaderboard CSVs built from every score file in the directory.

    .venv-bfcl/bin/python tests/data/bfcl_scores/generate.py

Only the scoring step is skipped (which entries fail is chosen here), and no latency is recorded
(the latency/cost cells are then "N/A"; tests/test_bfcl_runner.py holds a real file with them).
"""

import shutil
import sys
from pathlib import Path

from bfcl_eval.eval_checker.eval_runner_helper import (
    generate_leaderboard_csv,
    save_eval_results,
    update_leaderboard_table_with_local_score_file,
)
from bfcl_eval.utils import load_dataset_entry

MODEL = "Qwen_Qwen3-4B-Instruct-2507-FC"  # BFCL's directory name for Qwen/Qwen3-4B-Instruct-2507-FC
HERE = Path(__file__).resolve().parent

SCENARIOS = {
    # the user's eval: multi_turn_base only (BFCL's overall columns then count 3 + 13 categories as 0)
    "multi_turn_base": {"multi_turn_base": 141},
    # the whole multi-turn group: BFCL's own "Multi Turn Overall Acc" is complete
    "multi_turn_all": {"multi_turn_base": 141, "multi_turn_miss_func": 150, "multi_turn_miss_param": 160,
                       "multi_turn_long_context": 170},
    # the four live AST categories (BFCL weights them by entry count) plus multi_turn_base
    "live_and_multi_turn_base": {"live_simple": 230, "live_multiple": 1000, "live_parallel": 9,
                                 "live_parallel_multiple": 12, "multi_turn_base": 141},
    # part of the non-live group
    "non_live_part": {"simple_python": 380, "multiple": 190},
}


def failed_entry(entry_id: str, category: str) -> dict:
    # BFCL also stores the prompt, the model's answer and the possible answer; left out for size
    kind = "multi_turn:instance_state_mismatch" if category.startswith("multi_turn") else "simple_function_checker:wrong_count"
    return {"id": entry_id, "test_category": category, "valid": False, "error": {"error_message": [], "error_type": kind}}


def main() -> int:
    for name, correct in SCENARIOS.items():
        score_dir = HERE / name
        shutil.rmtree(score_dir, ignore_errors=True)
        score_dir.mkdir()
        for category, n_correct in correct.items():
            ids = [e["id"] for e in load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)]
            failed = [failed_entry(i, category) for i in ids[n_correct:]]
            model_result = [{"id": i, "result": []} for i in ids]
            save_eval_results(failed, n_correct, model_result, category, MODEL, score_dir)
        table: dict = {}
        update_leaderboard_table_with_local_score_file(table, score_dir)
        generate_leaderboard_csv(table, score_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
