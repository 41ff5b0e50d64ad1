"""BFCL question/answer files → evaluation records (domain.md §8).

A question file holds JSON lines ``{"id", "question": [[{role, content}, …]], "function": [doc, …]}``
and its answer file (``possible_answer/<same name>``) ``{"id", "ground_truth": [{fn: {param: [allowed]}}]}``.
Files come from a path, or straight out of the ``bfcl-eval`` wheel (a zip: nothing is installed —
bfcl-eval pins numpy 1.26 and a dozen SDKs, which would break the project's environment).
"""

from __future__ import annotations

import copy
import glob
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from registry.errors import InputDataError, UsageError
from registry.jsonl import parse_jsonl
from runners.eval.bfcl_match import category_of, check_category_supported
from runners.eval.records import EvalRecord

WHEEL_ENV = "RLREG_BFCL_WHEEL"
WHEEL_DATA_DIR = "bfcl_eval/data"
VERSION_PREFIX = "BFCL_v4"

# BFCL doc types -> JSON Schema, for rendering tools in the chat template (BFCL's GORILLA_TO_OPENAPI)
_OPENAPI_TYPES = {"integer": "integer", "number": "number", "float": "number", "string": "string",
                  "boolean": "boolean", "bool": "boolean", "array": "array", "list": "array",
                  "dict": "object", "object": "object", "tuple": "array", "any": "string"}


def find_wheel(explicit: str | None, project_root: Path) -> Path:
    """The bfcl-eval wheel: ``explicit``, else ``$RLREG_BFCL_WHEEL``, else ``.cache/bfcl/bfcl_eval-*.whl``."""
    candidates = [explicit, os.environ.get(WHEEL_ENV)]
    for c in candidates:
        if c:
            p = Path(os.path.expandvars(os.path.expanduser(c)))
            if not p.is_file():
                raise UsageError(f"bfcl-eval wheel '{p}' does not exist (download it with: "
                                 f"pip download bfcl-eval --no-deps -d .cache/bfcl)")
            return p
    found = sorted(glob.glob(str(project_root / ".cache" / "bfcl" / "bfcl_eval-*.whl")))
    if not found:
        raise UsageError(
            "no bfcl-eval wheel found: set eval.bfcl_data.wheel or $RLREG_BFCL_WHEEL, or run "
            "`pip download bfcl-eval --no-deps -d .cache/bfcl`"
        )
    return Path(found[-1])


def read_json_lines(text: str, source: str) -> list[dict]:
    return parse_jsonl(text, source, "BFCL files hold one JSON object per line")


def wheel_category_files(wheel: Path, category: str) -> tuple[list[dict], list[dict], str]:
    """(questions, answers, source label) for one category, read out of the wheel zip."""
    q_name = f"{WHEEL_DATA_DIR}/{VERSION_PREFIX}_{category}.json"
    a_name = f"{WHEEL_DATA_DIR}/possible_answer/{VERSION_PREFIX}_{category}.json"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        if q_name not in names or a_name not in names:
            have = list(iter_categories(wheel))
            raise UsageError(f"BFCL category '{category}' has no question+answer files in {wheel.name} "
                             f"(categories with answers: {', '.join(have)})")
        questions = read_json_lines(zf.read(q_name).decode(), f"{wheel.name}:{q_name}")
        answers = read_json_lines(zf.read(a_name).decode(), f"{wheel.name}:{a_name}")
    return questions, answers, f"{wheel.name}:{q_name}"


def file_pair(questions: Path, answers: Path | None) -> tuple[list[dict], list[dict], str]:
    answers = answers or questions.parent / "possible_answer" / questions.name
    for p, what in ((questions, "question"), (answers, "answer")):
        if not p.is_file():
            raise UsageError(f"BFCL {what} file '{p}' does not exist (set eval.bfcl_data.questions/answers)")
    return (read_json_lines(questions.read_text(), str(questions)),
            read_json_lines(answers.read_text(), str(answers)), str(questions))


def to_records(questions: list[dict], answers: list[dict], source: str, limit: int | None = None) -> list[EvalRecord]:
    """Join questions and answers by id; the first ``limit`` questions (file order)."""
    by_id = {a.get("id"): a for a in answers}
    records: list[EvalRecord] = []
    for i, q in enumerate(questions[: limit or None]):
        rid = q.get("id")
        where = f"{source}: record {i} (id {rid!r})"
        if rid not in by_id or "ground_truth" not in by_id[rid]:
            raise InputDataError(f"{where}: no ground truth with this id in the answer file (pair the question file with its possible_answer file)")
        category = category_of(str(rid))
        try:
            check_category_supported(category)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from exc
        turns, functions = q.get("question"), q.get("function")
        if not (isinstance(turns, list) and turns and isinstance(turns[0], list) and isinstance(functions, list)):
            raise InputDataError(f"{where}: expected 'question' as [[{{role, content}}]] and 'function' as a list")
        if len(turns) != 1:
            raise InputDataError(f"{where}: {len(turns)} user turns; the builtin eval scores single-turn "
                                 "categories only (use backend: bfcl for multi_turn)")
        records.append(EvalRecord(
            id=str(rid), messages=[dict(m) for m in turns[0]], tools=[to_openai_tool(f) for f in functions],
            kind="bfcl", ground_truth=by_id[rid]["ground_truth"], functions=functions, category=category,
        ))
    if not records:
        raise InputDataError(f"{source}: no BFCL records to evaluate")
    return records


def to_openai_tool(doc: dict) -> dict[str, Any]:
    """A BFCL function doc as an OpenAI tool (types mapped to JSON Schema; names unchanged)."""
    fn = copy.deepcopy(doc)
    fn["parameters"] = _schema(fn.get("parameters", {"type": "dict", "properties": {}}))
    return {"type": "function", "function": fn}


def _schema(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if isinstance(out.get("type"), str):
        out["type"] = _OPENAPI_TYPES.get(out["type"], "string")
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _schema(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = _schema(out["items"])
    return out


def load(questions: str | None, answers: str | None, category: str | None, wheel: str | None,
         project_root: Path, resolve: Any, limit: int | None = None) -> list[EvalRecord]:
    """Records from an explicit file pair or a wheel category (exactly one is set by the spec)."""
    if category:
        try:  # before reading: a multi-turn file would fail on its shape, not on what is wrong
            check_category_supported(category)
        except ValueError as exc:
            raise UsageError(f"eval.bfcl_data.category: {exc}") from exc
        qs, ans, source = wheel_category_files(find_wheel(wheel, project_root), category)
    else:
        qs, ans, source = file_pair(resolve(questions), resolve(answers) if answers else None)
    return to_records(qs, ans, source, limit)


def iter_categories(wheel: Path) -> Iterable[str]:
    prefix = f"{WHEEL_DATA_DIR}/possible_answer/{VERSION_PREFIX}_"
    with zipfile.ZipFile(wheel) as zf:
        for n in sorted(zf.namelist()):
            if n.startswith(prefix) and n.endswith(".json"):
                yield n[len(prefix):-5]
