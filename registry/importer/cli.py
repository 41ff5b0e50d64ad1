"""``rlreg import EXP_DIR [-o specs/NAME.yaml] [--base SPEC]`` (registered in registry/cli.py LAZY_COMMANDS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

HEADER = "# yaml-language-server: $schema=../docs/spec.schema.json\n"


def import_to_doc(exp_dir: Path, *, output: Path | None = None, base_ref: str | None = None, name: str | None = None,
                  verl_python: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """(ImportResult, the spec document to write); writes and validates it when ``output`` is given."""
    from registry.errors import SpecError
    from registry.importer import _launch_flat, differing_keys, import_experiment, reduce_to_base
    from registry.importer.hydra_files import deep_merge, flatten
    from registry.loader import load_spec
    from registry.spec import Spec

    result = import_experiment(exp_dir, verl_python=verl_python, name=name or (output.stem if output else None))
    doc = result.spec
    if base_ref:
        base = load_spec(base_ref).spec
        base_doc = base.model_dump(mode="json")
        full = Spec.model_validate(result.spec).model_dump(mode="json")
        doc = {"extends": base.name, **reduce_to_base(full, base_doc)}
        merged = deep_merge(base_doc, {k: v for k, v in doc.items() if k != "extends"})
        if result.kind == "swift":
            from registry.importer.swift_import import swift_args_of

            if swift_args_of(merged) != swift_args_of(full):  # extends cannot remove a base key
                raise SpecError(f"--base {base_ref}: the base sets sections or swift arguments the experiment does not; "
                                "import without --base, or pick another base")
            left = {}
        else:
            left = differing_keys(_launch_flat(merged), flatten(result.composed), result.base, result.derived)
        if left:  # extends cannot remove a base key; say which ones stay different
            raise SpecError(f"--base {base_ref}: the base sets verl keys the experiment does not "
                            f"({', '.join(sorted(left)[:8])}); import without --base, or pick another base")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        load_spec(output.resolve())  # the written file validates (extends resolved from the specs dir)
    return result, doc


@click.command("import")
@click.argument("exp_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the spec here (default: print it).")
@click.option("--base", "base_ref", help="Extend this spec and write only what differs from it.")
@click.option("--name", help="Spec name (default: the output file's stem, else the directory name).")
@click.option("--verl-python", type=click.Path(dir_okay=False, path_type=Path),
              help="Python of the verl venv that composes the Hydra config (default .venv-verl/bin/python).")
@click.option("--json", "as_json", is_flag=True, help="Print {spec, kind, unmapped, notes, path} as JSON.")
def import_cmd(exp_dir: Path, output: Path | None, base_ref: str | None, name: str | None,
               verl_python: Path | None, as_json: bool) -> None:
    """Write a spec from a hardtry-style experiment directory — a verl RL one (configs/*.yaml with a
    Hydra defaults list, the convert, eval and vLLM configs, scripts/*.sh) or an ms-swift SFT one
    (configs/sft_config.yaml, train_local.sh, merge script, eval and vLLM configs) — printing every
    key it could not map."""
    result, doc = import_to_doc(exp_dir, output=output, base_ref=base_ref, name=name, verl_python=verl_python)
    if as_json:
        from registry.redact import redact_obj

        click.echo(json.dumps({"spec": doc, "kind": result.kind, "unmapped": redact_obj(result.unmapped),
                               "notes": redact_obj(result.notes),
                               "path": str(output) if output else None}, indent=2, default=str))
        return
    to_err = output is None  # the spec itself goes to stdout then
    if output is None:
        click.echo(HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)
    else:
        click.echo(f"wrote {output} ({'extends ' + base_ref if base_ref else 'standalone'})")
    from registry.redact import redact_text

    for line in result.notes:
        click.echo(f"note: {redact_text(line)}", err=to_err)
    for line in result.unmapped:
        click.echo(f"not mapped: {redact_text(line)}", err=to_err)
    click.echo(f"{len(result.unmapped)} key(s) not mapped", err=to_err)
