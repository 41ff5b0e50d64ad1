"""The BFCL backend (domain.md §1 step 4): ``vllm serve`` + ``bfcl generate`` + ``bfcl evaluate``.

One server, ``repeats`` BFCL runs against it in parallel, each in its own ``BFCL_PROJECT_ROOT``
(BFCL writes results, scores, file locks and reads ``.env`` there, so parallel runs must not share
it). BFCL reaches the server through ``LOCAL_SERVER_ENDPOINT``/``LOCAL_SERVER_PORT`` and
``REMOTE_OPENAI_BASE_URL`` with ``--skip-server-setup``, and loads the tokenizer from
``--local-model-path`` (BFCL's OSS handlers format prompts themselves and call /v1/completions
with the local path as the model name, so vLLM serves the model under that path).

Failure policy: every repeat that finished is logged (metrics at step r, CSVs, logs) before the
stage decides; more than ``allow_failed_repeats`` failures fail the stage with the failed repeats'
log paths in the message. A repeat whose every request failed ("Error during inference" in all
results: BFCL would score the outage as a 0 % model) counts as failed; single request errors are
counted in ``eval/inference_errors``. A started server that died during the runs fails the stage.
The server is stopped in every case (``finally`` + process-group kill).

Per-entry results: BFCL's own result and score JSON files of every finished repeat are logged as
artifacts (``eval/bfcl/repeat_<r>/result/…``, ``…/score/…``; the work dir is wiped by the next
run) and read into the ``eval/entries.json`` table (``runners.eval.entries``: id, category, valid,
error type, model response), which the paired comparison reads.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from registry.context import StageContext, StageResult
from registry.errors import MissingExtra
from registry.spec.eval import BfclSpec, EvalSpec
from runners.eval import entries
from runners.eval.bfcl_match import category_of
from runners.eval.scores import INFERENCE_ERROR, inference_errors, repeat_metrics
from runners.eval.server import (
    ServerNotReady,
    VllmServer,
    log_tail,
    run_logged,
    vllm_argv,
    wait_until_ready,
)
from runners.eval.summary import aggregate, summary_table


class BfclRepeatsFailed(RuntimeError):
    """More BFCL repeats failed than ``allow_failed_repeats`` permits (the others are logged)."""


@dataclass
class RepeatOutcome:
    repeat: int
    root: Path
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


def bfcl_env(root: Path, base_url: str, base_env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of one BFCL repeat: its own project root, pointed at the server."""
    env = dict(os.environ if base_env is None else base_env)
    url = urlparse(base_url if "://" in base_url else f"http://{base_url}")
    env["BFCL_PROJECT_ROOT"] = str(root)
    env["LOCAL_SERVER_ENDPOINT"] = url.hostname or "localhost"
    env["LOCAL_SERVER_PORT"] = str(url.port or (443 if url.scheme == "https" else 80))
    base = base_url.rstrip("/")
    env["REMOTE_OPENAI_BASE_URL"] = base if base.endswith("/v1") else base + "/v1"
    env.setdefault("REMOTE_OPENAI_API_KEY", "EMPTY")
    return env


def ids_by_category(test_ids: list[str]) -> dict[str, list[str]]:
    """``test_case_ids_to_generate.json`` content: ``{category: [ids]}``."""
    out: dict[str, list[str]] = {}
    for rid in test_ids:
        out.setdefault(category_of(rid), []).append(rid)
    return out


def categories(spec: BfclSpec) -> str:
    return ",".join(ids_by_category(spec.test_ids)) if spec.test_ids else spec.test_category


def generate_argv(bfcl_cmd: str, spec: BfclSpec, model_path: Path, result_dir: Path) -> list[str]:
    return [bfcl_cmd, "generate", "--model", spec.model_name, "--test-category", categories(spec),
            "--temperature", str(spec.temperature), "--num-threads", str(spec.num_threads),
            "--backend", "vllm", "--skip-server-setup", "--local-model-path", str(model_path),
            "--result-dir", str(result_dir), "--allow-overwrite"] + (["--run-ids"] if spec.test_ids else [])


def evaluate_argv(bfcl_cmd: str, spec: BfclSpec, result_dir: Path, score_dir: Path) -> list[str]:
    return [bfcl_cmd, "evaluate", "--model", spec.model_name, "--test-category", categories(spec),
            "--result-dir", str(result_dir), "--score-dir", str(score_dir)] + (["--partial-eval"] if spec.test_ids else [])


def resolve_bfcl_command(command: str, project_root: Path) -> str:
    expanded = os.path.expanduser(os.path.expandvars(command))
    if os.sep in expanded:
        path = Path(expanded) if Path(expanded).is_absolute() else project_root / expanded
        if path.is_file():
            return str(path)
    elif shutil.which(expanded):
        return shutil.which(expanded) or expanded
    raise MissingExtra(f"the BFCL command '{command}'", "scripts/setup-bfcl-venv.sh (creates .venv-bfcl/bin/bfcl)")


def run_repeat(r: int, root: Path, bfcl_cmd: str, spec: BfclSpec, model_path: Path, base_url: str) -> RepeatOutcome:
    """generate then evaluate; never raises (the outcome carries the error)."""
    started = time.monotonic()
    outcome = RepeatOutcome(r, root)
    result_dir, score_dir = root / "result", root / "score"
    root.mkdir(parents=True, exist_ok=True)
    if spec.test_ids:  # BFCL reads it from BFCL_PROJECT_ROOT when --run-ids is given
        (root / "test_case_ids_to_generate.json").write_text(json.dumps(ids_by_category(spec.test_ids), indent=2))
    env = bfcl_env(root, base_url)
    deadline = started + spec.repeat_timeout_s
    try:
        for step, argv in (("generate", generate_argv(bfcl_cmd, spec, model_path, result_dir)),
                           ("evaluate", evaluate_argv(bfcl_cmd, spec, result_dir, score_dir))):
            log = root / f"{step}.log"
            code = run_logged(argv, log, env, timeout_s=max(1.0, deadline - time.monotonic()), cwd=root)
            if code != 0:
                outcome.error = f"`bfcl {step}` exited with {code} (log: {log}):\n{log_tail(log, 1500)}"
                return outcome
        errors, total = inference_errors(result_dir)
        if total and errors == total:
            outcome.error = (f"all {total} BFCL requests failed (\"{INFERENCE_ERROR}\" in every result; "
                             f"is the server up?), see {root / 'generate.log'}")
            return outcome
        outcome.metrics = {**repeat_metrics(score_dir), "eval/inference_errors": float(errors)}
    except Exception as exc:  # noqa: BLE001 - one repeat's failure must not hide the others
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        outcome.seconds = time.monotonic() - started
    return outcome


def run_bfcl(stage_spec: EvalSpec, ctx: StageContext, model_path: Path) -> StageResult:
    spec = stage_spec.bfcl
    bfcl_cmd = resolve_bfcl_command(spec.bfcl_command, ctx.project_root)
    work = ctx.work_dir / "bfcl"
    if work.exists():
        shutil.rmtree(work)  # a rerun must not evaluate a previous attempt's results
    work.mkdir(parents=True)
    server_log = work / "vllm-server.log"
    ctx.tracker.log_params({"model_path": str(model_path), "bfcl_command": bfcl_cmd})
    ctx.tracker.set_tags({"eval.bfcl.vllm_argv": " ".join(vllm_argv(spec, model_path)) if not spec.base_url else "",
                          "eval.bfcl.base_url": spec.base_url or ""})
    outcomes: list[RepeatOutcome] = []
    server = nullcontext(spec.base_url) if spec.base_url else VllmServer(spec, model_path, server_log)
    try:
        with server as base_url:
            if spec.base_url:
                wait_until_ready(base_url, spec.startup_timeout_s)
            with ThreadPoolExecutor(max_workers=stage_spec.repeats) as pool:
                futures = [pool.submit(run_repeat, r, work / f"repeat_{r}", bfcl_cmd, spec, model_path, base_url)
                           for r in range(stage_spec.repeats)]
                outcomes = [f.result() for f in futures]
            if isinstance(server, VllmServer) and server.proc is not None and server.proc.poll() is not None:
                raise ServerNotReady(
                    f"the vLLM server exited with code {server.proc.returncode} during the BFCL runs, so their "
                    f"scores are not the model's; its log is {server_log}:\n{log_tail(server_log)}"
                )
    finally:
        if server_log.is_file():
            ctx.tracker.log_artifact(server_log, "eval/bfcl")
        _log_repeats(ctx, outcomes)
    return _finish(stage_spec, ctx, outcomes)


def _log_repeats(ctx: StageContext, outcomes: list[RepeatOutcome]) -> None:
    rows = []
    for o in outcomes:
        if o.ok:
            ctx.tracker.log_metrics({**o.metrics, "eval/repeat_seconds": o.seconds}, step=o.repeat)
        dest = f"eval/bfcl/repeat_{o.repeat}"
        for path in sorted((o.root / "score").glob("data_*.csv")) + sorted(o.root.glob("*.log")):
            ctx.tracker.log_artifact(path, dest)
        for path, rel in entries.bfcl_files(o.root):
            ctx.tracker.log_artifact(path, f"{dest}/{rel}")
        if o.ok:
            rows += entries.bfcl_rows(o.root, o.repeat)
    if rows:
        ctx.tracker.log_table(rows, entries.ARTIFACT)
    ctx.tracker.flush()


def _finish(stage_spec: EvalSpec, ctx: StageContext, outcomes: list[RepeatOutcome]) -> StageResult:
    good = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    agg = aggregate([o.metrics for o in good], stage_spec.confidence) if good else {}
    agg["eval/repeats_failed"] = float(len(failed))
    if good:
        ctx.tracker.log_dict(summary_table([o.metrics for o in good], stage_spec.confidence), "eval/summary.json")
    if len(failed) > stage_spec.bfcl.allow_failed_repeats or not good:
        ctx.tracker.log_metrics({"eval/repeats_failed": float(len(failed))}, step=0)
        ctx.tracker.flush()
        details = "\n".join(f"repeat {o.repeat}: {o.error}" for o in failed)
        raise BfclRepeatsFailed(
            f"{len(failed)} of {len(outcomes)} BFCL repeats failed (allowed: {stage_spec.bfcl.allow_failed_repeats}); "
            f"the {len(good)} finished ones are logged in this run. Raise eval.bfcl.allow_failed_repeats to accept "
            f"fewer repeats.\n{details}"
        )
    scores_dir = ctx.out_dir / "scores"
    for o in good:
        dest = scores_dir / f"repeat_{o.repeat}"
        dest.mkdir(parents=True, exist_ok=True)
        for path in (o.root / "score").glob("data_*.csv"):
            shutil.copy2(path, dest / path.name)
        for path, rel in entries.bfcl_files(o.root):  # BFCL's per-entry files survive the next run here
            (dest / rel).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel / path.name)
    info = {"repeats": len(outcomes), "failed": [o.repeat for o in failed],
            "accuracy": f"{agg.get('eval/accuracy_mean', float('nan')):.3f}"}
    return StageResult(outputs={"scores": scores_dir}, metrics=agg, info=info)


def describe_bfcl(stage_spec: EvalSpec) -> str:
    spec = stage_spec.bfcl
    model = "<model dir>"
    lines = []
    if spec.base_url:
        lines.append(f"use the server at {spec.base_url}")
    else:
        lines.append("$ " + " ".join(vllm_argv(spec, model)))
    root = "<work>/bfcl/repeat_<r>"
    lines.append(f"{stage_spec.repeats} x in parallel (BFCL_PROJECT_ROOT={root}):")
    lines.append("  $ " + " ".join(generate_argv(spec.bfcl_command, spec, Path(model), Path(root) / "result")))
    lines.append("  $ " + " ".join(evaluate_argv(spec.bfcl_command, spec, Path(root) / "result", Path(root) / "score")))
    return "\n".join(lines)
