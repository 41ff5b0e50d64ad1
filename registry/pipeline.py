"""Run a spec: one parent MLflow run, one nested child run per stage, cached stage outputs.

Crash safety: a runner writes into a fresh temporary directory; only after it returns is the
directory renamed into ``.rlreg/stages/<stage>/<key>/<run id>`` and its digests recorded on the
run, and only FINISHED runs whose outputs still match their digests are reused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from filelock import FileLock

from registry import cache, parent_view
from registry.context import StageContext
from registry.errors import RlregError, StageFailed, Terminated, UsageError
from registry.gitinfo import git_diff, git_info
from registry.hashing import digest_and_fingerprint, spec_hash
from registry.loader import LoadedSpec, project_root
from registry.redact import redact_text
from registry.selection import check_force, leading_cached, not_cached
from registry.stages import STAGES, load_runner, stage_spec_payload
from registry.store import all_experiment_ids, ensure_store, experiment_id, stage_store_root, tracking_uri
from registry.tracking import Tracker


@dataclass
class StageOutcome:
    stage: str
    run_id: str
    key: str
    cache_hit: str | None
    outputs: dict[str, Path]
    metrics: dict[str, float]
    digests: dict[str, str] = field(default_factory=dict)


@dataclass
class RunSummary:
    spec: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    stages: list[StageOutcome] = field(default_factory=list)
    status: str = "FINISHED"

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "parent_run_id": self.parent_run_id, "experiment_id": self.experiment_id,
            "tracking_uri": self.tracking_uri, "status": self.status,
            "stages": [
                {"stage": s.stage, "run_id": s.run_id, "cache_key": s.key, "cache_hit": s.cache_hit,
                 "outputs": {k: str(v) for k, v in s.outputs.items()}, "metrics": s.metrics}
                for s in self.stages
            ],
        }


def spec_dump(spec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def select_stages(loaded: LoadedSpec, only: list[str] | None) -> list[str]:
    planned = loaded.spec.stages()
    if not only:
        return planned
    unknown = [s for s in only if s not in planned]
    if unknown:
        raise UsageError(
            f"--stages {','.join(unknown)}: not in this spec's pipeline ({', '.join(planned) or 'empty'})"
        )
    return [s for s in planned if s in only]


class Pipeline:
    def __init__(
        self,
        loaded: LoadedSpec,
        *,
        stages: list[str] | None = None,
        force: bool | list[str] = False,
        echo: Callable[[str], None] = print,
        root: Path | None = None,
        system_metrics: bool | None = None,
        tags: dict[str, str] | None = None,
        stage_specs: dict[str, Any] | None = None,
    ):
        self.loaded = loaded
        self.spec = loaded.spec
        self.extra_tags = dict(tags or {})
        """More parent-run tags (a study cell's rlreg.study/arm/seed/cell/grid)."""
        self.stage_specs = dict(stage_specs or {})
        """Stage → the spec it runs with instead of ``spec`` (a study's shared stages: no seed override)."""
        self.only = stages
        self.force = force
        self.echo = echo
        self.root = root or project_root()
        self.store_root = stage_store_root(self.root)
        self.uri = tracking_uri()
        self.client: Any = None
        self.system_metrics = system_metrics
        """None: the spec's ``tracking.system_metrics``; False: off for this run (--no-system-metrics)."""
        self.lineage: Any = None
        self._open_children: set[str] = set()
        """Stage runs started and not yet terminated: an interrupt anywhere marks them KILLED."""

    # -- public ---------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        stages = select_stages(self.loaded, self.only)
        check_force(self.force, stages)
        planned = self.loaded.spec.stages()
        # --stages: earlier stages that are not selected come from the cache (checked below)
        stages = planned[: planned.index(stages[-1]) + 1] if stages else stages
        self.client = ensure_store(self.uri)
        from registry.datasets import DatasetLineage

        self.lineage = DatasetLineage(self.client)
        from registry.recovery import reap_dead_runs, remove_stale_tmp

        reaped = reap_dead_runs(self.client)
        remove_stale_tmp(self.store_root / "tmp")
        for run_id in reaped:
            self.echo(f"Marked run {run_id} KILLED: its process is gone (crashed or killed earlier).")
        leading = leading_cached(self, stages)
        parent_id, exp_id = self._start_parent()
        summary = RunSummary(self.spec.name, parent_id, exp_id, self.uri)
        self.echo(f"Parent run {parent_id} in experiment '{self._experiment_name(exp_id)}' ({self.uri})")
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
        try:
            inputs: dict[str, Path] = {}
            digests: dict[str, str] = {}
            for i, stage in enumerate(stages, 1):
                outcome = self._run_stage(stage, i, len(stages), parent_id, exp_id, inputs, digests,
                                          reuse_only=not self._selected(stage), hit=leading.get(stage))
                summary.stages.append(outcome)
                if stage == "train":  # the parent shows the training curves (compare page overlays them)
                    parent_view.copy_curves(self.client, outcome.cache_hit or outcome.run_id, parent_id)
                for name, path in outcome.outputs.items():
                    inputs[f"{stage}.{name}"] = path
            headline = {k: v for s in summary.stages for k, v in s.metrics.items()}
            self.lineage.log_to(parent_id)  # every dataset any stage used, cache hits included
            parent = Tracker(self.client, parent_id)
            parent.log_metrics(parent_view.headline(headline))
            parent.flush()
            self.client.set_terminated(parent_id, "FINISHED")
        except (KeyboardInterrupt, Terminated):
            summary.status = "KILLED"
            for run_id in [*self._open_children, parent_id]:
                self.client.set_tag(run_id, "rlreg.note", "interrupted (SIGINT/SIGTERM)")
                self.client.set_terminated(run_id, "KILLED")
            raise
        except BaseException:
            summary.status = "FAILED"
            self.client.set_terminated(parent_id, "FAILED")
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return summary

    # -- parent ---------------------------------------------------------------------------------
    def _start_parent(self) -> tuple[str, str]:
        spec = self.spec
        tags = {
            "rlreg.spec": spec.name,
            "rlreg.spec_hash": spec_hash(spec_dump(spec)),
            "rlreg.role": "parent",
            "rlreg.spec_file": str(self.loaded.path),
            "rlreg.extends_chain": " -> ".join(p.stem for p in self.loaded.chain),
            "rlreg.pid": str(os.getpid()),
            "rlreg.host": cache.host(),
            "mlflow.note.content": spec.description or spec.name,
            # also under `mlflow run`, whose run gets a random name: the UI shows the spec name
            "mlflow.runName": spec.name,
            **git_info(self.root),
            **{f"spec.tag.{k}": v for k, v in spec.tags.items()},
            **parent_view.identity_tags(spec_dump(spec)),
            **self.extra_tags,
        }
        if self.loaded.overrides:  # as typed; the params and spec.yaml hold their effect
            import shlex

            tags["rlreg.overrides"] = shlex.join(self.loaded.overrides)
        attached = os.environ.pop("MLFLOW_RUN_ID", None)  # set by `mlflow run`
        if attached:
            run = self.client.get_run(attached)
            parent_id, exp_id = attached, run.info.experiment_id
            if run.info.status != "RUNNING":
                self.client.update_run(parent_id, status="RUNNING")
        else:
            exp_id = experiment_id(self.client, spec.experiment)
            parent_id = self.client.create_run(exp_id, tags={"mlflow.runName": spec.name}).info.run_id
        tracker = Tracker(self.client, parent_id)
        try:
            parent_view.mark_classic_ml(self.client, exp_id)
            tracker.set_tags(tags)
            tracker.log_params(parent_view.parent_params(spec_dump(spec)))
            tracker.log_dict(spec_dump(spec), "spec.yaml")
            if tags.get("rlreg.git_dirty") == "true":
                tracker.log_text(git_diff(self.root), "git.diff")
        except BaseException:  # never leave a parent RUNNING because its metadata was refused
            self.client.set_terminated(parent_id, "FAILED")
            raise
        return parent_id, exp_id

    def _experiment_name(self, exp_id: str) -> str:
        return self.client.get_experiment(exp_id).name

    # -- stages ---------------------------------------------------------------------------------
    def _forced(self, stage: str) -> bool:
        return self.force is True or (isinstance(self.force, list) and stage in self.force)

    def _stage_spec(self, stage: str) -> Any:
        return self.stage_specs.get(stage, self.spec)

    def _selected(self, stage: str) -> bool:
        return not self.only or stage in self.only

    def _run_stage(self, stage, i, n, parent_id, exp_id, inputs, digests, *, reuse_only=False,
                   hit: cache.CachedStage | None = None) -> StageOutcome:
        key, payload = cache.stage_key(stage, self._stage_spec(stage), digests, self.root, self.ref_digest)
        label = f"[{i}/{n}] {stage}"
        if reuse_only:
            hit = hit or cache.find_cached(self.client, all_experiment_ids(self.client), key)
            if hit is None:
                raise UsageError(not_cached(self.spec.name, self.only, stage, [stage]))
            child_id = self._start_child(stage, parent_id, exp_id, key, payload)
            self.echo(f"{label}: not selected, reusing cached run {hit.run_id} (key {key[:12]})")
            outcome = self._reuse(stage, child_id, key, hit)
            for name, digest in outcome.digests.items():
                digests[f"{stage}.{name}"] = digest
            return outcome
        hit = None if self._forced(stage) else cache.find_cached(self.client, all_experiment_ids(self.client), key)
        lock = None
        if hit is None:
            # Two identical stages racing: the second waits, then reuses the first one's output.
            lock_path = self.store_root / "locks" / f"{key}.lock"
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(lock_path))
            lock.acquire()
            if not self._forced(stage):
                hit = cache.find_cached(self.client, all_experiment_ids(self.client), key)
        try:
            child_id = self._start_child(stage, parent_id, exp_id, key, payload)
            if hit is not None:
                self.echo(f"{label}: cache hit, reusing run {hit.run_id} (key {key[:12]})")
                outcome = self._reuse(stage, child_id, key, hit)
            else:
                self.echo(f"{label}: running {STAGES[stage].runner(self.spec)} (key {key[:12]})")
                outcome = self._execute(stage, child_id, parent_id, key, inputs)
        finally:
            if lock is not None:
                lock.release()
        for name, digest in outcome.digests.items():
            digests[f"{stage}.{name}"] = digest
        return outcome

    def _start_child(self, stage, parent_id, exp_id, key, payload) -> str:
        tags = {
            "mlflow.parentRunId": parent_id,
            "mlflow.runName": stage,  # nested under its parent in the UI: the stage says it all
            "rlreg.spec": self.spec.name,
            "rlreg.stage": stage,
            "rlreg.role": "stage",
            cache.TAG_KEY: key,
            "rlreg.runner": STAGES[stage].runner(self.spec),
            "rlreg.code_version": next(iter(payload["code"].values())),
            "rlreg.pid": str(os.getpid()),
            "rlreg.host": cache.host(),
        }
        if stage in ("train", "eval"):
            from registry.reward_info import reward_tags

            tags.update(reward_tags(self.spec, self.root))
        run = self.client.create_run(exp_id, tags=tags)
        self._open_children.add(run.info.run_id)
        tracker = Tracker(self.client, run.info.run_id)
        tracker.log_params(stage_spec_payload(stage, self._stage_spec(stage)))
        tracker.log_dict(payload, "cache_key_payload.json")
        return run.info.run_id

    def _reuse(self, stage, child_id, key, hit: cache.CachedStage) -> StageOutcome:
        tracker = Tracker(self.client, child_id)
        tracker.set_tags({cache.TAG_HIT: hit.run_id,
                          cache.TAG_OUTPUTS: cache.outputs_tag(hit.outputs, hit.digests, hit.fingerprints),
                          cache.TAG_HEADLINE: json.dumps(hit.metrics)})
        tracker.log_metrics(hit.metrics)
        tracker.flush()
        from registry.datasets import run_dataset_inputs

        self.lineage.log_to(child_id, run_dataset_inputs(self.client, hit.run_id))  # what the reused run used
        self.lineage.collect(child_id)
        self._terminate(child_id, "FINISHED")
        return StageOutcome(stage, child_id, key, hit.run_id, hit.outputs, hit.metrics, hit.digests)

    def _execute(self, stage, child_id, parent_id, key, inputs) -> StageOutcome:
        # The pid in the name lets a later invocation delete what a killed process left behind.
        tmp = self.store_root / "tmp" / f"{stage}-{key[:12]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        work = self.store_root / "work" / stage / key
        if self._forced(stage) and work.exists():
            # --force means from scratch: never resume from (possibly final) checkpoints
            self.echo(f"    --force: discarding resume state in {work}")
            shutil.rmtree(work)
        tmp.mkdir(parents=True)
        work.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(self.client, child_id)
        final = self.store_root / "stages" / stage / key / child_id
        spec = self._stage_spec(stage)
        ctx = StageContext(
            stage=stage, spec=spec, out_dir=tmp, work_dir=work, inputs=dict(inputs),
            tracker=tracker, project_root=self.root, resolve_ref=self.resolve_ref, final_dir=final,
        )
        section = getattr(spec, STAGES[stage].section)
        from registry.quiet import quiet_hf
        from registry.sysmetrics import system_metrics

        tracking = self.spec.tracking
        monitor = system_metrics(self.uri, child_id, tracking.system_metrics and self.system_metrics is not False,
                                 tracking.system_metrics_interval_s)
        try:
            self.lineage.log_to(child_id)  # the datasets of the stages before this one
            runner = load_runner(stage, spec)
            with monitor, quiet_hf():
                result = runner.run(section, ctx)
            tracker.flush()
            self.lineage.collect(child_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            outputs = {name: final / Path(p).resolve().relative_to(tmp.resolve()) if _inside(p, tmp) else Path(p)
                       for name, p in result.outputs.items()}
            os.replace(tmp, final)
            hashed = {name: digest_and_fingerprint(p) for name, p in outputs.items()}
            digests = {name: d for name, (d, _) in hashed.items()}
            metrics = {k: float(v) for k, v in result.metrics.items() if v is not None}
            tracker.set_tags({cache.TAG_OUTPUTS: cache.outputs_tag(outputs, digests, {n: f for n, (_, f) in hashed.items()}),
                              cache.TAG_HEADLINE: json.dumps(metrics)})
            tracker.log_metrics({k: v for k, v in metrics.items() if k not in tracker.metric_keys})
            tracker.flush()
            self._terminate(child_id, "FINISHED")
            if result.info:
                self.echo("    " + ", ".join(f"{k}={v}" for k, v in result.info.items()))
            return StageOutcome(stage, child_id, key, None, outputs, metrics, digests)
        except (KeyboardInterrupt, Terminated):
            _safe_flush(tracker)
            shutil.rmtree(tmp, ignore_errors=True)
            raise  # run() marks this stage run and the parent KILLED
        except BaseException as exc:
            _safe_flush(tracker)
            tb = traceback.format_exc()
            try:
                tracker.log_text(tb, "error.txt")
                self.client.set_tag(child_id, "rlreg.error", redact_text(str(exc))[:7000])
                self.client.set_tag(parent_id, "rlreg.error", f"{stage}: {redact_text(str(exc))[:7000]}")
            finally:
                self._terminate(child_id, "FAILED")
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, RlregError):
                exc.message = f"stage '{stage}' (run {child_id}): {exc.message}"
                raise
            raise StageFailed(stage, f"{type(exc).__name__}: {exc} (traceback logged as error.txt)", child_id) from exc

    def _terminate(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)
        self._open_children.discard(run_id)

    # -- references -----------------------------------------------------------------------------
    def resolve_ref(self, ref: str) -> Path:
        return resolve_ref(ref, self.root, self.client)

    def ref_digest(self, ref: str) -> str:
        """Recorded digest of what an ``@spec`` reference points at (for cache keys)."""
        try:
            return _find_ref(ref, self.client)[1]
        except UsageError:
            return "unresolved"  # the runner reports the missing reference with its own message


def resolve_ref(ref: str, root: Path, client: Any | None = None) -> Path:
    """A path (``$VAR``/``~`` expanded, relative to the project root), or ``@spec`` /
    ``@spec:stage.output`` = that output of the spec's latest FINISHED run."""
    if not ref.startswith("@"):
        p = Path(os.path.expanduser(os.path.expandvars(ref)))
        return p if p.is_absolute() else root / p
    return _find_ref(ref, client or ensure_store())[0]


def _find_ref(ref: str, client: Any) -> tuple[Path, str]:
    body = ref[1:]
    spec_name, _, target = body.partition(":")
    stage, _, output = (target or "merge.model").partition(".")
    output = output or "model"
    from registry.spec import SPEC_NAME_RE

    if not (SPEC_NAME_RE.match(spec_name) and stage.isidentifier() and output.isidentifier()):
        raise UsageError(f"reference '{ref}': use @<spec> or @<spec>:<stage>.<output> (e.g. @demo-grpo:sft.model)")
    runs = client.search_runs(
        experiment_ids=all_experiment_ids(client),
        filter_string=(f"tags.`rlreg.spec` = '{spec_name}' and tags.`rlreg.stage` = '{stage}' "
                       "and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=10,
    )
    for run in runs:
        found = cache.verified(run, client)  # existing and unchanged, as for a cache hit
        if found is not None and output in found.outputs:
            return found.outputs[output], found.digests[output]
    raise UsageError(
        f"reference '{ref}': no FINISHED '{stage}' stage of spec '{spec_name}' with an unchanged output "
        f"'{output}' in {tracking_uri()} (run `rlreg run {spec_name}` first)"
    )


def _inside(p: Any, root: Path) -> bool:
    try:
        Path(p).resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _safe_flush(tracker: Tracker) -> None:
    try:
        tracker.flush()
    except Exception:  # the store may be what failed; never mask the original error
        pass


def _raise_terminated(signum, frame):
    raise Terminated()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def plan_lines(loaded: LoadedSpec, only: list[str] | None = None) -> list[str]:
    """What `rlreg run --dry-run` prints before any stage-specific description."""
    lines = []
    for stage in select_stages(loaded, only):
        module = STAGES[stage].runner(loaded.spec)
        lines.append(f"  {stage:<9} {module}  ({STAGES[stage].description})")
    return lines


def overrides(loaded: LoadedSpec) -> list[str]:
    """Dotted keys this spec sets differently from the spec it extends."""
    if loaded.parent_raw is None:
        return []
    from registry.spec import Spec

    try:
        parent = Spec.model_validate(loaded.parent_raw).model_dump(mode="json")
    except Exception:
        parent = loaded.parent_raw
    from registry.diff import diff_specs, fmt

    own = spec_dump(loaded.spec)
    if loaded.base_raw is not None:  # command-line overrides are listed apart (overrides.change_lines)
        try:
            own = Spec.model_validate(loaded.base_raw).model_dump(mode="json")
        except Exception:
            pass
    return [f"{c.key}: {fmt(c.left)} -> {fmt(c.right)}"
            for c in diff_specs(parent, own) if c.key not in ("name", "extends")]


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)

