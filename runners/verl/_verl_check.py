"""Compose and validate a generated verl config with verl's own code. Runs INSIDE the verl venv
(``<verl python> -I runners/verl/_verl_check.py request.json result.json``), so it imports only
the standard library, Hydra/OmegaConf and verl — never rlreg's registry.

Steps, each a failure kind in the result (``error.step``):
  compose   Hydra composes ``<config_dir>/<config_name>.yaml`` (defaults ppo_trainer) + overrides,
            exactly as ``python -m verl.trainer.main_ppo --config-path … --config-name …`` does.
  new_keys  keys in the generated file that verl's ``ppo_trainer`` lacks, outside the subtrees the
            mapping adds on purpose (a typo would otherwise be carried silently).
  validate  what ``main_ppo.main`` runs before touching Ray: ``auto_set_device`` and
            ``verl.utils.config.validate_config``, plus the rollout dataclass the workers build.
  plugin    (optional) import the EGPO plugin and look the estimator up in verl's registry.
  tools     (multi-turn) load the generated tool files with verl's ``load_all_tools``, as every
            agent-loop worker does; ``result["tools"]`` lists the names loaded.

The result JSON: ``{"ok", "verl_version", "config" (resolved), "error": {"step", "type", "message"}}``,
plus ``"defaults"`` (verl's own ``ppo_trainer``, resolved) when the request sets ``with_defaults``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback


def _new_keys(body: dict, base, prefix: str = "") -> list[str]:
    """Dotted paths of ``body`` that ``base`` (a DictConfig) does not have. ``keys()`` rather than
    ``in``: a mandatory ``???`` value (e.g. rollout.name) is a key even though ``in`` says no."""
    from omegaconf import DictConfig

    found = []
    keys = set(base.keys()) if isinstance(base, DictConfig) else set()
    for key, value in body.items():
        path = f"{prefix}{key}"
        if key not in keys:
            found.append(path)
        elif isinstance(value, dict):
            child = base._get_node(key)
            if isinstance(child, DictConfig):
                found.extend(_new_keys(value, child, path + "."))
    return found


def _compose(config_dir: str, config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def check(request: dict) -> dict:
    import importlib.metadata as md

    import yaml

    result: dict = {"ok": False, "verl_version": md.version("verl")}
    step = "compose"
    try:
        cfg = _compose(request["config_dir"], request["config_name"], request["overrides"])
        result["config"] = _container(cfg)

        step = "new_keys"
        with open(f"{request['config_dir']}/{request['config_name']}.yaml") as f:
            body = yaml.safe_load(f)
        body.pop("defaults", None)
        body.pop("hydra", None)
        with initialize_config_dir_for_verl():
            from hydra import compose

            base = compose(config_name="ppo_trainer")
        if request.get("with_defaults"):  # for the dry run's "differs from verl's defaults"
            result["defaults"] = _container(base)
        expected = tuple(request.get("expected_new_keys", ()))
        unexpected = [
            k for k in _new_keys(body, base) if not any(k == e or k.startswith(e + ".") for e in expected)
        ]
        if unexpected:
            raise KeyError(
                "verl's ppo_trainer config has no key(s) " + ", ".join(f"'{k}'" for k in unexpected)
            )

        step = "validate"
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import omega_conf_to_dataclass, validate_config
        from verl.utils.device import auto_set_device

        with contextlib.redirect_stdout(io.StringIO()):
            auto_set_device(cfg)
            validate_config(
                config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg)
            )
            # verl builds this dataclass in its workers; config.algorithm stays a DictConfig
            # (verl never instantiates AlgoConfig from it, which is why algorithm.egpo is legal)
            omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)

        if request.get("project_root"):
            step = "plugin"
            sys.path.insert(0, request["project_root"])
            import importlib

            for module in request.get("plugin_modules", []):
                importlib.import_module(module)
            from verl.trainer.ppo.core_algos import (
                AdvantageEstimator,
                get_adv_estimator_fn,
            )

            name = cfg.algorithm.adv_estimator
            if name not in {e.value for e in AdvantageEstimator} or name in request.get("plugin_estimators", []):
                get_adv_estimator_fn(name)
        if request.get("tool_files"):
            step = "tools"
            if request.get("tools_root") and request["tools_root"] not in sys.path:
                sys.path.insert(0, request["tools_root"])
            from verl.tools.tool_registry import load_all_tools

            files = request["tool_files"]
            with contextlib.redirect_stdout(io.StringIO()):  # BaseTool prints each schema
                tools = load_all_tools(files.get("tool_config_path"), files.get("function_tool_path"))
            result["tools"] = [t.name for t in tools]
        result["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the caller as data
        result["error"] = {
            "step": step,
            "type": type(exc).__name__,
            "message": _message(exc),
            "traceback": traceback.format_exc(limit=6),
        }
    return result


@contextlib.contextmanager
def initialize_config_dir_for_verl():
    """Hydra initialised on verl's packaged config directory (the base ``ppo_trainer``)."""
    from hydra import initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        yield


def _container(cfg) -> dict:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation that only resolves at run time: show it unresolved
        return OmegaConf.to_container(cfg, resolve=False)


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text}\n{str(cause).strip()}"
    return text


def main(argv: list[str]) -> int:
    """``request.json`` holds one request or ``{"checks": [request, …]}`` (one verl import for all)."""
    request_path, result_path = argv[1], argv[2]
    with open(request_path) as f:
        request = json.load(f)
    if "checks" in request:
        result = {"results": [check(r) for r in request["checks"]]}
    else:
        result = check(request)
    with open(result_path, "w") as f:
        json.dump(result, f, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
