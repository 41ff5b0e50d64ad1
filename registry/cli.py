"""The ``rlreg`` command line (also ``python -m registry``).

Errors print ``Error: <file>: <dotted.path>: <what is wrong> (<the fix>)`` and exit 2 for spec/usage
problems, 1 for a stage that failed; never a traceback. A bug ends in one ``Error: internal
error: …`` line naming a log file with the traceback (``--debug`` or RLREG_DEBUG=1 prints it).
Everything echoed passes registry/redact.py.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from registry.errors import RlregError, SpecError, Terminated, UsageError
from registry.redact import redact_obj, redact_text
from registry.selection import FORCE_ALL, check_force, is_stage_list, parse_force, reused_stages

# Commands implemented outside registry/, imported only when used (keeps `rlreg --help` fast).
LAZY_COMMANDS = {
    "compare": ("analysis.cli:compare", "Compare metrics of runs, with confidence intervals and a verdict."),
    "report": ("analysis.cli:report", "Write a Markdown/HTML report over runs or a study's arms."),
    "plot": ("analysis.cli:plot", "Plot per-step curves of runs or a study's arms (mean ± band across seeds)."),
    "plot-entropy": ("analysis.entropy_cli:plot_entropy",
                     "Plot entropy per tool round or policy entropy over steps (files, logs, rollout dumps, runs)."),
    "analyze-diagnostics": ("analysis.qstar_diagnostics:analyze_diagnostics",
                            "Compare q* α methods from generate diagnostics (files or runs)."),
    "import": ("registry.importer.cli:import_cmd", "Write a spec from a hardtry-style experiment directory."),
    "verify": ("registry.verify:verify", "Re-hash cached stage outputs; mark runs whose outputs changed."),
    "promote": ("registry.promote:promote", "Point a registry alias (champion) at the model version of a run."),
    "study": ("registry.study.cli:study", "Run a study (arms × grid × seeds) and show its cells."),
    "runs": ("registry.runlist:runs", "List runs (spec, study/arm/seed, status, duration, metrics)."),
}


class RlregGroup(click.Group):
    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            target, _ = LAZY_COMMANDS[name]
            module, attr = target.split(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                reason = str(exc)  # `exc` is unbound after the except block; keep the text

                @click.command(name=name, help=LAZY_COMMANDS[name][1])
                def unavailable():
                    raise click.ClickException(f"'{name}' is unavailable in this checkout ({reason})")

                return unavailable
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RlregError as exc:
            lines = exc.problems if isinstance(exc, SpecError) else [exc.message]
            for line in lines:
                click.echo(f"Error: {redact_text(line)}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted (SIGINT); runs in progress were marked KILLED", err=True)
            ctx.exit(130)
        except Terminated:
            click.echo("Error: terminated (SIGTERM); runs in progress were marked KILLED", err=True)
            ctx.exit(143)
        except Exception as exc:  # last resort: a clear line and a log file, not a traceback
            if ctx.params.get("debug") or os.environ.get("RLREG_DEBUG"):
                raise
            from registry.crashlog import internal_error_line, write_crash_log

            click.echo(f"Error: {internal_error_line(exc, write_crash_log(exc))}", err=True)
            ctx.exit(1)


@click.group(cls=RlregGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rl-registry", prog_name="rlreg")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error (same as RLREG_DEBUG=1).")
def main(debug: bool) -> None:
    """rl-registry: declarative, MLflow-tracked experiment specs for LLM RL post-training.

    A spec is specs/<name>.yaml; `extends: <name>` inherits from another spec.
    """


# -- list / show / validate / schema ---------------------------------------------------------------
@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """List the specs in specs/ with their stages."""
    from registry.loader import list_specs, load_spec

    rows = []
    for path in list_specs():
        try:
            loaded = load_spec(path)
            rows.append({"name": loaded.name, "extends": loaded.spec.extends, "stages": loaded.spec.stages(),
                         "description": redact_text(loaded.spec.description), "valid": True})
        except Exception as exc:  # one broken file must not hide the others  # noqa: BLE001
            rows.append({"name": path.stem, "extends": None, "stages": [], "description": "",
                         "valid": False, "error": redact_text(_problem_lines(exc, path.stem)[0])})
    from registry.study.load import list_rows

    rows += list_rows()  # studies (kind: study) after the specs
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max([len(r["name"]) for r in rows] + [4])
    for r in rows:
        stages = " → ".join(r["stages"]) if r["valid"] else "INVALID (rlreg validate " + r["name"] + ")"
        if r.get("kind") == "study" and r["valid"]:
            stages = f"study: {r['cells']} (rlreg study run {r['name']})"
        parent = f" (extends {r['extends']})" if r["extends"] else ""
        click.echo(f"{r['name']:<{width}}  {stages}{parent}")
        if r["description"]:
            click.echo(f"{'':<{width}}  {r['description']}")


@main.command()
@click.argument("spec")
@click.argument("set_keys", metavar="[KEY=VALUE | ~KEY]...", nargs=-1)
@click.option("--resolved", is_flag=True, help="Show the spec after `extends`, overrides and defaults.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def show(spec: str, set_keys: tuple[str, ...], resolved: bool, fmt: str) -> None:
    """Print a spec (as written, or --resolved). Overrides imply --resolved."""
    from registry.loader import load_spec, read_yaml
    from registry.overrides import change_lines
    from registry.pipeline import overrides

    loaded = load_spec(spec, overrides=set_keys)
    resolved = resolved or bool(set_keys)
    data: Any = redact_obj(loaded.spec.model_dump(mode="json") if resolved else read_yaml(loaded.path))
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    import yaml

    if resolved:
        chain = " <- ".join(p.stem for p in loaded.chain)
        click.echo(f"# resolved: {chain}")
        for line in overrides(loaded):
            click.echo(redact_text(f"# override {line}"))
        for line in change_lines(loaded):
            click.echo(redact_text(f"# set {line}"))
    click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


def _is_override(arg: str) -> bool:
    # `key=value` / `~key`; an existing file of that name is a spec, not an override
    return ("=" in arg or arg.startswith("~")) and not Path(arg).exists()


@main.command()
@click.argument("specs", metavar="[SPEC]... [KEY=VALUE | ~KEY]...", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(specs: tuple[str, ...], as_json: bool) -> None:
    """Validate specs and studies (no spec: every file in specs/). Overrides apply to every spec
    named (as in `rlreg run`), e.g. `rlreg validate verl8 train.rollout.n=16`. Exit 2 if any is
    invalid."""
    from registry.loader import list_specs, load_spec
    from registry.study.load import list_studies, study_path, summary, validate_study
    from registry.validation import display_path

    set_keys = [a for a in specs if _is_override(a)]
    specs = tuple(a for a in specs if not _is_override(a))
    if set_keys and not specs:
        raise click.UsageError("overrides need a spec to apply to (rlreg validate SPEC KEY=VALUE ...)")
    refs: list[Any] = list(specs) or [*list_specs(), *list_studies()]
    results, failed = [], 0
    for ref in refs:
        label = display_path(ref) if isinstance(ref, Path) else ref
        try:
            if study_path(ref) is not None:
                study = validate_study(study_path(ref))
                results.append({"spec": label, "kind": "study", "valid": True, "cells": summary(study)})
                if not as_json:
                    click.echo(f"ok  {display_path(study.path)}  (study: {summary(study)})")
                continue
            loaded = load_spec(ref, overrides=set_keys)
            results.append({"spec": label, "valid": True, "stages": loaded.spec.stages(),
                            **({"overrides": set_keys} if set_keys else {})})
            if not as_json:
                applied = f" + {' '.join(set_keys)}" if set_keys else ""
                click.echo(f"ok  {display_path(loaded.path)}{applied}  ({' → '.join(loaded.spec.stages()) or 'no stages'})")
        except Exception as exc:  # one broken file must not stop the others  # noqa: BLE001
            failed += 1
            problems = [redact_text(p) for p in _problem_lines(exc, label)]
            results.append({"spec": label, "valid": False, "errors": problems})
            if not as_json:
                for line in problems:
                    click.echo(f"Error: {line}", err=True)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    if failed:
        sys.exit(2)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@click.option("--study", "of_study", is_flag=True, help="The schema of a study file instead (docs/study.schema.json).")
def schema(output: Path | None, of_study: bool) -> None:
    """Write the JSON Schema of a spec (editors validate specs with it)."""
    from registry.schema import spec_json_schema

    if of_study:
        from registry.study.model import study_json_schema

        text = json.dumps(study_json_schema(), indent=2, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(spec_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


# -- diff -----------------------------------------------------------------------------------------
@main.command()
@click.argument("a")
@click.argument("b")
@click.argument("b_set", metavar="[KEY=VALUE | ~KEY]...", nargs=-1)
@click.option("--a-set", "a_set", multiple=True, metavar="KEY=VALUE", help="An override for A (repeatable).")
@click.option("--b-set", "b_set_opt", multiple=True, metavar="KEY=VALUE",
              help="An override for B (repeatable; same as listing it after B).")
@click.option("--all", "show_all", is_flag=True, help="Show unchanged keys too.")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text", show_default=True)
def diff(a: str, b: str, b_set: tuple[str, ...], a_set: tuple[str, ...], b_set_opt: tuple[str, ...],
         show_all: bool, fmt: str) -> None:
    """Key-aware diff of two resolved specs (spec names, .yaml paths or MLflow run ids).

    Overrides after B apply to B (`rlreg diff demo-egpo demo-egpo train.algorithm.egpo_lambda=0.2`
    shows what that override changes); --a-set applies one to A."""
    from registry.diff import diff_specs
    from registry.diff import fmt as fmt_value
    from registry.specref import resolved_spec_dict

    b_overrides = [*b_set, *b_set_opt]
    left = redact_obj(resolved_spec_dict(a, list(a_set)))
    right = redact_obj(resolved_spec_dict(b, b_overrides))
    a = redact_text(" ".join([a, *(shlex.quote(o) for o in a_set)]))
    b = redact_text(" ".join([b, *(shlex.quote(o) for o in b_overrides)]))
    changes = diff_specs(left, right, include_same=show_all)
    if fmt == "json":
        click.echo(json.dumps([{"key": c.key, "kind": c.kind, "a": None if c.kind == "added" else c.left,
                                "b": None if c.kind == "removed" else c.right} for c in changes], indent=2, default=str))
        return
    if not changes:
        click.echo(f"{a} and {b} resolve to the same spec")
        return
    if fmt == "md":
        click.echo(f"| key | {a} | {b} |\n|---|---|---|")
        for c in changes:
            click.echo(f"| `{c.key}` | {fmt_value(c.left)} | {fmt_value(c.right)} |")
        return
    width = max(len(c.key) for c in changes)
    for c in changes:
        mark = {"changed": "~", "added": "+", "removed": "-", "same": " "}[c.kind]
        click.echo(f"{mark} {c.key:<{width}}  {fmt_value(c.left)}  ->  {fmt_value(c.right)}")


# -- run ------------------------------------------------------------------------------------------
@main.command()
@click.argument("spec", required=False)
@click.argument("set_keys", metavar="[KEY=VALUE | ~KEY]...", nargs=-1)
@click.option("--overrides", "overrides_text", metavar="'K=V ...'",
              help="Overrides as one string, split like a shell would (for `mlflow run -P overrides=...`).")
@click.option("--stages", help="Comma-separated subset of the spec's stages to run (earlier outputs come from the cache).")
@click.option("--force", is_flag=False, flag_value=FORCE_ALL, default=None, metavar="[STAGE,…]",
              help="Recompute from scratch (no cache hit, no resume): every stage, or the named ones (--force train,eval).")
@click.option("--dry-run", is_flag=True, help="Print the plan (and e.g. the verl command) without running.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
@click.option("--no-system-metrics", "no_system_metrics", is_flag=True,
              help="Do not log MLflow system metrics on the stage runs (spec: tracking.system_metrics).")
def run(spec: str | None, set_keys: tuple[str, ...], overrides_text: str | None, stages: str | None,
        force: str | None, dry_run: bool, as_json: bool, no_system_metrics: bool) -> None:
    """Run a spec: one parent MLflow run, one child run per stage, cached stages reused.

    KEY=VALUE sets a key of the resolved spec (train.algorithm.egpo_lambda=0.2, seed=3); ~KEY
    removes one. Values are YAML scalars or flow lists ([a, b])."""
    from registry.loader import load_spec
    from registry.overrides import change_lines, split_option
    from registry.pipeline import Pipeline, overrides, plan_lines, select_stages

    if (force not in (None, FORCE_ALL) and not is_stage_list(force)
            and (spec is None or "=" in spec or spec.startswith("~"))):
        # `rlreg run --force SPEC [KEY=VALUE…]`: the bare flag took the spec as its value
        set_keys = (spec, *set_keys) if spec is not None else set_keys
        spec, force = force, FORCE_ALL
    if spec is None:
        raise click.UsageError("Missing argument 'SPEC'.")
    from registry.study.load import study_path

    if study_path(spec) is not None:
        raise UsageError(f"'{spec}' is a study, not a spec (run it with `rlreg study run {spec}`)")

    try:
        loaded = load_spec(spec, overrides=[*split_option(overrides_text), *set_keys])
    except RlregError as exc:
        _fail_attached_run(exc)
        raise
    only = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    chain = " <- ".join(p.stem for p in loaded.chain)
    echo = (lambda m: click.echo(redact_text(m), err=True)) if as_json else (lambda m: click.echo(redact_text(m)))
    echo(f"Spec {loaded.name}: {chain}")
    for line in overrides(loaded):
        echo(f"  override {line}")
    if loaded.overrides:
        echo(f"Overrides: {shlex.join(loaded.overrides)}")
        for line in change_lines(loaded):
            echo(f"  set {line}")
        if any(o.startswith("seed=") for o in loaded.overrides):
            from registry.seeds import pinned_stage_seeds

            for section, value in pinned_stage_seeds(loaded.raw).items():
                echo(f"  note: {section}.seed is set ({value}), so `seed` does not reach {section} (~{section}.seed to follow it)")
    echo("Stages:")
    if not dry_run:  # a dry run prints each stage with its cache mark instead
        for line in plan_lines(loaded, only):
            echo(line)
    if reused := reused_stages(loaded.spec.stages(), only):
        echo(f"  not selected, taken from the cache: {', '.join(reused)}")
    check_force(parse_force(force), select_stages(loaded, only))  # also under --dry-run
    if dry_run:
        from registry.plan import dry_run_report

        dry_run_report(loaded, only, echo, as_json)
        return
    import contextlib

    # With --json, stdout carries only the JSON summary: anything libraries print (MLflow prints
    # "View run … at: <url>" for server URIs) goes to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet:
        try:
            summary = Pipeline(loaded, stages=only, force=parse_force(force), echo=echo,
                               system_metrics=False if no_system_metrics else None).run()
        except RlregError as exc:  # e.g. --stages with an uncached earlier stage, before the parent starts
            _fail_attached_run(exc)
            raise
    from registry.summary import closing_lines

    for line in closing_lines(summary):
        echo(line)
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))


def _problem_lines(exc: Exception, label: Any = "") -> list[str]:
    if isinstance(exc, SpecError):
        return exc.problems
    if isinstance(exc, RlregError):
        return [exc.message]
    from registry.crashlog import internal_error_line, write_crash_log

    return [f"{label}: " + internal_error_line(exc, write_crash_log(exc))]


def _fail_attached_run(exc: RlregError) -> None:
    """Under `mlflow run`, the run already exists: never leave it RUNNING after a spec error."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    try:
        from registry.store import ensure_store

        client = ensure_store()
        client.set_tag(run_id, "rlreg.error", redact_text(str(exc))[:7000])
        client.set_terminated(run_id, "FAILED")
    except Exception:  # the store itself may be the problem; the spec error is what to report
        pass


if __name__ == "__main__":
    main()
