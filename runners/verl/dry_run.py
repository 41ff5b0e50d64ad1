"""What ``rlreg run <spec> --dry-run`` says about a verl train stage: the launch command, the keys
the spec sets and how the composed config differs from verl's own ``ppo_trainer`` defaults —
short. The full config verl composed (~1000 lines) goes to a file whose path the output names.

``describe_data`` is the structured form (for ``--dry-run --json``); ``describe_text`` renders it.
The verl check (a verl import, 10-50 s) runs once per spec and process.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from registry import redact
from registry.store import stage_store_root
from runners.verl.compose import (
    PROJECT_ROOT,
    SETUP_HINT,
    VERL_VERSION,
    check_request,
    composed_or_raise,
    resolve_verl_python,
    run_checks,
    verl_available,
)
from runners.verl.stage import plan_train

if TYPE_CHECKING:
    from registry.spec import Spec
    from registry.spec.train import TrainSpec

ENV_SUBTREE = "ray_kwargs.ray_init.runtime_env.env_vars"
_MEMO: dict[str, dict[str, Any]] = {}


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves; ``{}`` stays a leaf."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def config_diff(composed: dict[str, Any], defaults: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted keys whose composed value differs from verl's default: ``{key: {"default", "value"}}``
    (``default`` is ``"<absent>"`` for a key verl's config lacks, ``value`` for a removed one)."""
    new, base = flatten(composed), flatten(defaults)
    diff = {k: {"default": base.get(k, "<absent>"), "value": v} for k, v in new.items() if k not in base or base[k] != v}
    diff.update({k: {"default": v, "value": "<absent>"} for k, v in base.items() if k not in new})
    return dict(sorted(diff.items()))


def out_dir_for(spec_name: str) -> Path:
    """Where a dry run writes the config files: ``<store>/dry-run/<spec>/verl`` (never the stage dirs)."""
    return stage_store_root(PROJECT_ROOT) / "dry-run" / re.sub(r"[^A-Za-z0-9_.-]+", "_", spec_name) / "verl"


def describe_data(train: TrainSpec, spec: Spec) -> dict[str, Any]:
    """The launch a run would make, as data: ``command``, ``environment``, ``spec_sets`` (dotted key
    → value, what rlreg writes into the config file), ``overrides``, ``composed`` (bool),
    ``differs_from_defaults`` (dotted key → default/value/by: ``spec`` or ``verl``, i.e. derived
    by verl's interpolations), ``files`` (paths written), ``verl_python``, ``note``."""
    python = resolve_verl_python(train.verl.python, PROJECT_ROOT)
    out = out_dir_for(spec.name)
    memo_key = hashlib.sha256(f"{spec.model_dump_json()}|{python}|{verl_available(python)}|{out}".encode()).hexdigest()
    if memo_key in _MEMO and Path(_MEMO[memo_key]["files"]["config"]).is_file():
        return _MEMO[memo_key]
    model = spec.model.path if spec.model and spec.model.path else "<model>"
    plan = plan_train(
        train,
        spec,
        project_root=PROJECT_ROOT,
        model_path=_placeholder_vars(os.path.expandvars(model)),
        train_files="<convert.train: train.parquet>",
        val_files="<convert.test: test.parquet>",
        checkpoint_dir=Path(train.verl.checkpoint_dir or "<train work dir>/checkpoints"),
        config_dir=Path("<train work dir>/verl"),
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "<tracking uri>"),
        run_id="<train child run id>",
    )
    spec_sets = flatten(plan.launch.config)
    data: dict[str, Any] = {
        "backend": "verl",
        "verl_version": VERL_VERSION,
        "verl_python": str(python),
        "command": plan.argv,
        "environment": dict(plan.env),
        "spec_sets": spec_sets,
        "overrides": list(plan.launch.overrides),
        "composed": False,
        "differs_from_defaults": {},
        "files": {},
        "note": "",
    }
    out.mkdir(parents=True, exist_ok=True)
    data["files"]["config"] = str(plan.launch.write(out))
    # the dry-run files are written masked, like the run's (registry/redact.py)
    redact.write_text(out / "command.txt", shlex.join(redact.redact_argv(plan.argv)) + "\n")
    redact.write_text(out / "overrides.txt", "".join(o + "\n" for o in plan.launch.overrides))
    data["files"]["command"] = str(out / "command.txt")
    if verl_available(python):
        (result,) = run_checks(python, [check_request(plan.launch, out, with_defaults=True)])
        composed = composed_or_raise(result, plan.launch, spec.name)  # the exact Error verl's checks give
        composed.pop("_rlreg_note", None)
        path = out / "composed_config.yaml"
        redact.write_text(path, yaml.safe_dump(composed, sort_keys=False))
        data["files"]["composed_config"] = str(path)
        data["composed"] = True
        diff = config_diff(composed, result.get("defaults") or {})
        for key, entry in diff.items():
            entry["by"] = "spec" if key in spec_sets or _overridden(key, plan.launch.overrides) else "verl"
        data["differs_from_defaults"] = diff
        if result.get("verl_version") != VERL_VERSION:
            data["note"] = f"checked with verl {result.get('verl_version')}, rlreg targets {VERL_VERSION}"
    else:
        data["note"] = f"not composed: no verl python at {python} (create it with {SETUP_HINT})"
    _MEMO[memo_key] = data
    return data


def describe_text(train: TrainSpec, spec: Spec) -> str:
    data = describe_data(train, spec)
    lines = ["verl launch (train.backend: verl)", "", "command:", "  " + shlex.join(data["command"]), "", "environment:"]
    lines += [f"  {k}={v}" for k, v in data["environment"].items()]
    if data["overrides"]:
        lines += ["", "overrides (train.verl.verl_overrides):"] + [f"  {o}" for o in data["overrides"]]
    diff = data["differs_from_defaults"]
    if data["composed"]:
        mine = {k: e for k, e in diff.items() if e["by"] == "spec" and not k.startswith(ENV_SUBTREE + ".")}
        derived = {k: e for k, e in diff.items() if e["by"] == "verl"}
        same = sorted(k for k in data["spec_sets"] if k not in diff)
        lines += ["", f"set by the spec, differing from verl {data['verl_version']}'s ppo_trainer defaults "
                  f"({len(mine)}; default -> value):"]
        lines += [f"  {k}: {_short(e['default'])} -> {_short(e['value'])}" for k, e in mine.items()]
        if any(k.startswith(ENV_SUBTREE + ".") for k in diff):
            lines.append(f"  {ENV_SUBTREE}: the environment above")
        if derived:
            lines += ["", f"derived by verl from those ({len(derived)}):"]
            lines += [f"  {k}: {_short(e['default'])} -> {_short(e['value'])}" for k, e in derived.items()]
        lines += ["", f"set by the spec to verl's default value ({len(same)}):"]
        lines += textwrap.wrap(", ".join(same), width=100, initial_indent="  ", subsequent_indent="  ",
                               break_on_hyphens=False)
        lines += ["", f"composed by verl with {data['verl_python']} (Hydra + validate_config passed); "
                  f"full config: {data['files']['composed_config']}"]
    else:
        lines += ["", f"set by the spec ({len(data['spec_sets'])} keys):"]
        lines += [f"  {k}: {_short(v)}" for k, v in data["spec_sets"].items() if not k.startswith(ENV_SUBTREE + ".")]
    if data["note"]:
        lines += ["", data["note"]]
    lines.append(f"generated config file: {data['files']['config']}")
    return "\n".join(lines)


def _overridden(key: str, overrides: list[str]) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] in (key, key.rsplit(".", 1)[0]) for o in overrides)


def _short(value: Any, limit: int = 80) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _placeholder_vars(text: str) -> str:
    """``${MODEL_ROOT}/x`` with MODEL_ROOT unset -> ``<MODEL_ROOT>/x`` (verl would read ``${…}`` as
    an OmegaConf interpolation and fail to resolve it)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: f"<{m.group(1) or m.group(2)}>", text)
