"""Check a generated verl config with verl itself before anything is launched.

The check runs ``_verl_check.py`` under the verl venv's python (verl is never imported into the
project's own environment: it pins other transformers/numpy versions and installs top-level
``tests``/``scripts`` packages). A config verl would reject becomes a ``SpecError`` that names the
spec field and the fix — seconds after ``rlreg run``, not minutes into a GPU job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from registry.errors import MissingExtra, SpecError, UsageError
from runners.verl.config import (
    CONFIG_NAME,
    EGPO_ESTIMATORS,
    EGPO_PLUGIN_MODULE,
    EXPECTED_NEW_KEYS,
    VerlLaunchConfig,
)

VERL_VERSION = "0.9.1"
CHECK_SCRIPT = Path(__file__).with_name("_verl_check.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SETUP_HINT = "scripts/setup-verl-venv.sh (then set train.verl.python to its bin/python)"
CHECK_TIMEOUT_S = 300

# verl's wording -> which spec field to change. First match wins.
_HINTS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"real_train_batch_size|minimal possible batch size"),
        (
            "train.train_batch_size x train.rollout.n must be a multiple of "
            "train.verl.nnodes x train.verl.n_gpus_per_node; change one of them"
        ),
    ),
    (
        re.compile(r"ppo_mini_batch_size|ppo_micro_batch_size"),
        (
            "make train.ppo_mini_batch_size (x rollout.n) divisible by n_gpus x "
            "train.verl.ppo_micro_batch_size_per_gpu, and at most train.train_batch_size"
        ),
    ),
    (
        re.compile(r"Could not override|not in struct|Key '.*' is not in struct"),
        (
            "fix the key in train.verl.verl_overrides (see verl's ppo_trainer.yaml), or prefix it "
            "with '+' to add a key verl's config does not have"
        ),
    ),
    (
        re.compile(r"Could not append|already at"),
        "the key exists in verl's config: drop the leading '+' in train.verl.verl_overrides",
    ),
    (
        re.compile(r"Unknown advantage estimator"),
        f"train.algorithm.adv_estimator needs the EGPO plugin ({EGPO_PLUGIN_MODULE}) to load in verl",
    ),
]


# OmegaConf's diagnostic lines after the message: not useful to a spec author
_NOISE = re.compile(r"^\s*(full_key|object_type|reference_type|value_type|msg)\s*[:=]")


def resolve_verl_python(python: str, project_root: Path = PROJECT_ROOT) -> Path:
    """``train.verl.python`` as an absolute path ($VAR/~ expanded, relative = project root).
    A bare command name (``python3``) is looked up on PATH."""
    import shutil

    expanded = os.path.expanduser(os.path.expandvars(python))
    if os.sep not in expanded:
        found = shutil.which(expanded)
        return Path(found) if found else Path(expanded)
    path = Path(expanded)
    # keep the venv's bin/python symlink as is: resolving it would leave the venv
    return path if path.is_absolute() else project_root / path


def verl_available(python: Path) -> bool:
    return python.is_file() and os.access(python, os.X_OK)


def require_verl(python: Path) -> None:
    if not verl_available(python):
        raise MissingExtra(f"verl (train.verl.python = {python})", SETUP_HINT)


def check_request(
    launch: VerlLaunchConfig, config_dir: Path, *, check_plugin: bool = True, with_defaults: bool = False
) -> dict[str, Any]:
    """The JSON request ``_verl_check.py`` reads for one config (written into ``config_dir``);
    ``with_defaults`` also returns verl's default ``ppo_trainer`` config (``result["defaults"]``)."""
    if not (config_dir / f"{CONFIG_NAME}.yaml").exists():
        launch.write(config_dir)
    multi_turn = launch.config["actor_rollout_ref"]["rollout"].get("multi_turn", {})
    tool_files = {k: multi_turn[k] for k in ("tool_config_path", "function_tool_path")
                  if multi_turn.get(k) and Path(multi_turn[k]).is_file()}
    return {
        "config_dir": str(config_dir.resolve()),
        "config_name": CONFIG_NAME,
        "overrides": launch.overrides,
        "expected_new_keys": list(EXPECTED_NEW_KEYS),
        "project_root": str(PROJECT_ROOT) if check_plugin else None,
        "plugin_modules": [EGPO_PLUGIN_MODULE],
        "plugin_estimators": list(EGPO_ESTIMATORS),
        "with_defaults": with_defaults,
        # generated multi-turn tool files verl must be able to load (absent in a dry run: they are
        # generated from the convert output at run time)
        "tool_files": tool_files,
        "tools_root": str(PROJECT_ROOT),
    }


def run_checks(python: Path, requests: list[dict[str, Any]], timeout_s: int = CHECK_TIMEOUT_S) -> list[dict[str, Any]]:
    """Run ``_verl_check.py`` once under ``python`` for all ``requests``; one result dict each
    (``ok``, ``verl_version``, ``config``, ``error``). Importing verl is the slow part (seconds to
    tens of seconds on a busy machine), so callers batch."""
    require_verl(python)
    with tempfile.TemporaryDirectory(prefix="rlreg-verl-check-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "request.json").write_text(json.dumps({"checks": requests}))
        result_path = tmp_path / "result.json"
        # -I: isolated mode, so the script's own directory (runners/verl) never shadows modules
        cmd = [str(python), "-I", str(CHECK_SCRIPT), str(tmp_path / "request.json"), str(result_path)]
        env = {**os.environ, "HYDRA_FULL_ERROR": "1", "VERL_USE_EXTERNAL_PLUGINS": "none"}
        env.pop("VERL_USE_EXTERNAL_MODULES", None)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise UsageError(f"checking the verl config with {python} took over {timeout_s} s") from exc
        if not result_path.exists():
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            raise UsageError(
                f"{python} could not run the verl config check (exit {proc.returncode}); is verl "
                f"{VERL_VERSION} installed there? Create the venv with {SETUP_HINT}.\n{tail}"
            )
        return json.loads(result_path.read_text())["results"]


def check_config(
    launch: VerlLaunchConfig,
    python: Path,
    *,
    spec_name: str,
    config_dir: Path | None = None,
    check_plugin: bool = True,
    timeout_s: int = CHECK_TIMEOUT_S,
) -> dict[str, Any]:
    """Compose + validate with verl; returns the composed config (resolved where possible).

    Raises ``SpecError`` when verl rejects the config, ``MissingExtra`` when verl is missing,
    ``UsageError`` when the verl python cannot run the check at all."""
    with tempfile.TemporaryDirectory(prefix="rlreg-verl-config-") as tmp:
        request = check_request(launch, config_dir or Path(tmp), check_plugin=check_plugin)
        (result,) = run_checks(python, [request], timeout_s)
    return composed_or_raise(result, launch, spec_name)


def composed_or_raise(result: dict[str, Any], launch: VerlLaunchConfig, spec_name: str) -> dict[str, Any]:
    """The composed config of a successful check, else the ``SpecError`` it deserves."""
    if not result.get("ok"):
        estimator = launch.config["algorithm"]["adv_estimator"]
        raise spec_error(spec_name, result["error"], result.get("verl_version", "?"), estimator)
    config = result["config"]
    if result.get("verl_version") != VERL_VERSION:
        # not fatal: the config composed and validated; say which verl did it
        config["_rlreg_note"] = f"checked with verl {result.get('verl_version')}, rlreg targets {VERL_VERSION}"
    return config


def spec_error(spec_name: str, error: dict[str, Any], verl_version: str, estimator: str) -> SpecError:
    message = error.get("message", "").strip()
    step = error.get("step", "?")
    hint = next((fix for pattern, fix in _HINTS if pattern.search(message)), None)
    if step == "new_keys":
        hint = (
            "a key rlreg writes is not in this verl's config: rlreg targets verl "
            f"{VERL_VERSION}, the verl python has {verl_version}; install the pinned version"
        )
    elif step == "plugin" and hint is None:
        hint = (
            f"the EGPO plugin ({EGPO_PLUGIN_MODULE}) failed to load in the verl venv for "
            f"adv_estimator '{estimator}'"
        )
    first = message.splitlines()[0] if message else error.get("type", "error")
    where = {
        "compose": "train.verl.verl_overrides",
        "new_keys": "train",
        "validate": "train",
        "plugin": "train.algorithm.adv_estimator",
        "tools": "train.rollout.multi_turn",
    }.get(step, "train")
    text = f"spec '{spec_name}': {where}: verl {verl_version} rejects the config ({step}): {first}"
    if hint:
        text += f" ({hint})"
    details = [line.strip() for line in message.splitlines()[1:] if line.strip() and not _NOISE.match(line)]
    problems = [text] + [f"  {line}" for line in details[:3]]
    return SpecError(text, problems)
