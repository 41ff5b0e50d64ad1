"""``rlreg import EXP_DIR``: a hardtry-style experiment directory -> a spec.

An experiment directory (hardtry ``exps/<name>/``) holds ``configs/*.yaml`` — a Hydra entry config
whose defaults list is ``[ppo_trainer, <common config>, _self_]``, the convert config, the BFCL eval
config and the vLLM config — and ``scripts/*.sh`` (the merge target ``TARGET_DIR=…``). The import:

1. composes the entry config with verl's own Hydra (in the verl venv, ``registry/importer/_compose.py``),
   exactly as ``verl.trainer.main_ppo --config-path configs --config-name <entry>`` would;
2. maps every key the user's files set to a spec field (``mapping.VERL_TO_SPEC``), the convert /
   eval / vLLM configs to ``data`` / ``eval``, the reward file to ``reward``;
3. builds the spec's verl config (runners/verl/config.py) and, for every key verl reads where it
   differs from the composed one (a value the spec cannot express, or a default of the spec that
   is not verl's), adds a ``train.verl.verl_overrides`` entry, so the spec's launch composes the
   same config except the ``mapping.DELIBERATE`` keys;
4. reports every key it could not map (not a verl key, so verl ignored it; or no spec field).

With ``--base SPEC`` the written spec ``extends`` it and holds only what differs from it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import MissingExtra, SpecError, UsageError
from registry.importer.hydra_files import ExperimentDir, deep_merge, flatten, read_experiment, script_assignment
from registry.importer.mapping import (
    VERL_TO_SPEC,
    convert_section,
    deliberate_reason,
    eval_sections,
    get_path,
    reward_section,
    set_path,
)

COMPOSE_SCRIPT = Path(__file__).with_name("_compose.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VERL_PYTHON = ".venv-verl/bin/python"


@dataclass
class ImportResult:
    spec: dict[str, Any]
    """The spec document (before --base reduction)."""
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    composed: dict[str, Any] = field(default_factory=dict)
    """The user's composed verl config (what main_ppo would run)."""
    base: dict[str, Any] = field(default_factory=dict)
    """verl's own ppo_trainer defaults (its keys are the keys verl reads)."""
    derived: set[str] = field(default_factory=set)
    """verl keys that are interpolations of other keys (and that the user did not set)."""
    kind: str = "verl"
    """``verl`` (an RL experiment) or ``swift`` (an ms-swift SFT experiment)."""
    swift_args: dict[str, list[str]] = field(default_factory=dict)
    """The user's ``swift sft`` arguments (SFT experiments: their config, then their script's)."""


def compose_hydra(config_dir: Path, config_name: str, python: Path) -> tuple[dict, dict, dict]:
    """(composed config, verl's ppo_trainer, the same unresolved) from the verl venv."""
    if not python.is_file():
        raise MissingExtra(f"verl (for composing the experiment's Hydra config; looked for {python})",
                           "scripts/setup-verl-venv.sh, or pass --verl-python")
    proc = subprocess.run([str(python), "-I", str(COMPOSE_SCRIPT), str(config_dir.resolve()), config_name],
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UsageError(f"{config_dir}/{config_name}.yaml: verl's Hydra could not compose it: {tail[0]}")
    out = json.loads(proc.stdout)
    return out["config"], out["base"], out["base_raw"]


def _launch_flat(spec_doc: dict[str, Any]) -> dict[str, Any]:
    """The spec's verl config as verl would see it (file body + its overrides), flattened."""
    from registry.spec import Spec
    from runners.verl.config import build_config

    spec = Spec.model_validate(spec_doc)
    assert spec.train is not None
    launch = build_config(spec.train, spec, model_path=spec.model.path if spec.model else "",
                          train_files="<train>", val_files="<test>",
                          checkpoint_dir=spec.train.verl.checkpoint_dir or "<checkpoints>", env_vars={})
    flat = flatten(launch.config)
    for key, value in spec.train.verl.verl_overrides.items():
        flat[key.lstrip("+")] = value
    return flat


def verl_reads(key: str, flat_base: dict[str, Any]) -> bool:
    """A key of verl's ppo_trainer, or one under a mapping verl leaves open (``override_config: {}``)."""
    if key in flat_base:
        return True
    parts = key.split(".")
    return any(flat_base.get(".".join(parts[:i])) == {} for i in range(1, len(parts)))


def differing_keys(ours: dict[str, Any], theirs: dict[str, Any], base: dict[str, Any],
                   derived: set[str] = frozenset()) -> dict[str, tuple[Any, Any]]:
    """Every key verl reads whose value differs, except the deliberate ones and the ``derived``
    ones (interpolations of other keys, compared through their sources): ``{key: (ours, theirs)}``.
    Both sides are flattened configs; a key a side does not set has verl's default."""
    flat_base = flatten(base)
    keys = {k for k in set(flat_base) | set(ours) | set(theirs) if verl_reads(k, flat_base)}
    out = {}
    for key in sorted(keys - set(derived)):
        if deliberate_reason(key):
            continue
        a, b = ours.get(key, flat_base.get(key)), theirs.get(key, flat_base.get(key))
        if not same_value(a, b):
            out[key] = (a, b)
    return out


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def import_experiment(exp_dir: Path, *, verl_python: Path | None = None, name: str | None = None) -> ImportResult:
    kind = experiment_kind(Path(exp_dir))
    if kind == "swift":
        from registry.importer.swift_files import read_sft_experiment
        from registry.importer.swift_import import import_sft_experiment

        sft_exp = read_sft_experiment(Path(exp_dir))
        result = ImportResult(spec={}, kind="swift")
        result.spec = import_sft_experiment(sft_exp, name or sft_exp.root.name, result)
        _validate(result.spec)
        return result
    exp = read_experiment(exp_dir)
    python = verl_python or PROJECT_ROOT / DEFAULT_VERL_PYTHON
    composed, base, base_raw = compose_hydra(exp.config_dir, exp.entry, python)
    flat_theirs, flat_base = flatten(composed), flatten(base)
    user_keys = sorted(flatten(exp.user))
    derived = {k for k, v in flatten(base_raw).items() if isinstance(v, str) and "${" in v} - set(user_keys)
    result = ImportResult(spec={}, composed=composed, base=base, derived=derived)
    doc = _skeleton(exp, name or exp.root.name, result)

    for key in user_keys:
        value = flat_theirs.get(key, get_path(exp.user, key))  # the composed value: OmegaConf's YAML types
        if key in VERL_TO_SPEC:
            set_path(doc, VERL_TO_SPEC[key], value)
        elif deliberate_reason(key):
            result.notes.append(f"{key}: {deliberate_reason(key)}")
        elif verl_reads(key, flat_base):
            continue  # a verl key the spec does not model: an override below when it differs
        elif key.startswith("hydra."):
            continue
        else:
            result.unmapped.append(f"{key} = {value!r}: not a verl {_verl_version()} key (verl ignores it)")
    lora = get_path(doc, "train.verl.lora")
    if lora is not None and not lora.get("rank"):
        doc["train"]["verl"].pop("lora")  # lora_rank 0 or unset: verl trains every weight
    if get_path(doc, "train.algorithm.adv_estimator") in ("egpo", "egpo_token"):
        set_path(doc, "train.algorithm.entropy_scope", "response")
        result.notes.append("train.algorithm.entropy_scope: response (hardtry's EGPO took the entropy over the "
                            "whole response; set `think` for the paper's think span)")
    _validate(doc)

    # keys the spec cannot express, and spec defaults that are not verl's: trailing overrides
    overrides: dict[str, Any] = {}
    for key, (_, theirs) in differing_keys(_launch_flat(doc), flat_theirs, base, derived).items():
        lora_off = VERL_TO_SPEC.get(key, "").startswith("train.verl.lora.") and get_path(doc, "train.verl.lora") is None
        if key in VERL_TO_SPEC and not lora_off and _try_set(doc, VERL_TO_SPEC[key], theirs):
            continue  # a spec default that is not verl's: the spec field says verl's value
        overrides[key if key in flat_base else "+" + key] = theirs
    set_path(doc, "train.verl.verl_overrides", overrides)
    for key in list(overrides):  # drop the ones a spec field set above already covers
        value = overrides.pop(key)
        if differing_keys(_launch_flat(doc), flat_theirs, base, derived):
            overrides[key] = value
    left = differing_keys(_launch_flat(doc), flat_theirs, base, derived)
    if left:
        raise SpecError(f"{exp_dir}: the imported spec still differs from the composed config at {sorted(left)[:5]}")
    if not overrides:
        doc["train"]["verl"].pop("verl_overrides")
    _validate(doc)
    result.spec = doc
    return result


def experiment_kind(root: Path) -> str:
    """``verl`` (a Hydra config whose defaults list holds ppo_trainer) or ``swift`` (an ms-swift SFT
    experiment: sft_config.yaml, or a script running ``swift sft``); neither is a usage error."""
    from registry.importer.hydra_files import CONFIG_DIRS, VERL_BASE, _defaults, _load_yaml
    from registry.importer.swift_files import is_sft_dir

    if not root.is_dir():
        raise UsageError(f"{root}: not a directory (give an experiment directory such as exps/verl7 or exps/full5)")
    config_dir = next((root / d for d in CONFIG_DIRS if (root / d).is_dir()), None)
    if config_dir is not None:
        for path in sorted(config_dir.glob("*.yaml")):
            doc = _load_yaml(path)
            if isinstance(doc, dict) and VERL_BASE in _defaults(doc):
                return "verl"
    if is_sft_dir(root):
        return "swift"
    where = config_dir or root
    raise UsageError(f"{where}: neither a verl experiment (a Hydra config whose defaults list `{VERL_BASE}`) nor an "
                     "ms-swift SFT experiment (configs/sft_config.yaml, or a script running `swift sft`) "
                     "(give a hardtry exps/<name> directory)")


def _try_set(doc: dict, path: str, value: Any) -> bool:
    """Set a spec field when the spec accepts the value (else the caller uses an override)."""
    before = get_path(doc, path, _MISSING)
    set_path(doc, path, value)
    try:
        _validate(doc)
        return True
    except SpecError:
        if before is _MISSING:
            parent, _, last = path.rpartition(".")
            get_path(doc, parent).pop(last)
        else:
            set_path(doc, path, before)
        return False


_MISSING = object()


def _verl_version() -> str:
    from runners.verl.compose import VERL_VERSION

    return VERL_VERSION


def _validate(doc: dict) -> None:
    from pydantic import ValidationError

    from registry.spec import Spec

    try:
        Spec.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"imported spec: {where}: {first['msg']} (the experiment's value cannot be expressed; "
                        "edit the written spec)") from exc


def _skeleton(exp: ExperimentDir, name: str, result: ImportResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "description": f"Imported from the hardtry experiment directory {exp.root.name} (rlreg import).",
        "experiment": "hardtry",
        "tags": {"origin": "hardtry", "hardtry.exp_dir": exp.root.name},
        "model": {"path": "", "dtype": "bfloat16"},
        "train": {"backend": "verl", "verl": {"python": DEFAULT_VERL_PYTHON, "max_actor_ckpt_to_keep": None}},
    }
    convert_cfg = _find(exp.files, "convert_messages_to_verl")
    data, unmapped = convert_section(convert_cfg)
    result.unmapped += unmapped
    if data:
        doc["data"] = data
    else:
        result.unmapped.append("no convert config (convert_messages_to_verl*.yaml): the spec has no data section; "
                               "add one (its train/test parquet feed verl)")
    reward_path = get_path(exp.user, "reward.custom_reward_function.path") or get_path(exp.user, "custom_reward_function.path")
    reward_name = get_path(exp.user, "reward.custom_reward_function.name") or get_path(exp.user, "custom_reward_function.name")
    reward, note = reward_section(reward_path, reward_name)
    if reward:
        doc["reward"] = reward
    if note:
        result.notes.append(note)
    for key in ("reward_kwargs",):
        extra = get_path(exp.user, f"custom_reward_function.{key}") or get_path(exp.user, f"reward.custom_reward_function.{key}")
        if extra:
            if "path" in doc.get("reward", {}):
                doc["reward"]["kwargs"] = dict(extra)
            else:
                result.unmapped.append(f"custom_reward_function.reward_kwargs = {extra!r} (the shipped reward takes none)")
    target = script_assignment(exp.scripts, "TARGET_DIR")
    doc["merge"] = {"log_mode": "reference"}
    if target:
        doc["tags"]["hardtry.merge_target"] = target
        result.unmapped.append(f"merge target TARGET_DIR={target} (rlreg writes the merged model into its store; "
                               "kept as tag hardtry.merge_target)")
    eval_section, unmapped = eval_sections(_find(exp.files, "eval_config"), _find(exp.files, "vllm_config"))
    result.unmapped += unmapped
    if eval_section:
        doc["eval"] = eval_section
    for stem in exp.files:
        if not any(stem.startswith(p) for p in ("convert_messages_to_verl", "eval_config", "vllm_config")):
            result.unmapped.append(f"configs/{stem}.yaml: not a file rlreg import reads")
    return doc


def _find(files: dict[str, dict], prefix: str) -> dict | None:
    for stem in sorted(files):
        if stem.startswith(prefix):
            return files[stem]
    return None


def reduce_to_base(doc: dict[str, Any], base_doc: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """``doc`` as a child of ``base_doc``: only the leaves that differ (mappings merge on extends,
    so a key the base has and ``doc`` lacks cannot be removed: the caller checks the result)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if top and key in ("name", "description"):
            out[key] = value
            continue
        if top and key == "extends":
            continue
        parent = base_doc.get(key)
        if isinstance(value, dict) and isinstance(parent, dict) and value:
            child = reduce_to_base(value, parent, top=False)
            if child:
                out[key] = child
        elif value != parent:
            out[key] = value
    return out


def merged_over(base_doc: dict, child: dict) -> dict:
    return deep_merge(base_doc, child)
