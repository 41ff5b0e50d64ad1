"""Compose a Hydra config directory the way ``python -m verl.trainer.main_ppo --config-path DIR
--config-name NAME`` does, and print it as JSON. Runs INSIDE the verl venv (standard library,
Hydra/OmegaConf and verl's packaged config only).

    <verl python> -I _compose.py CONFIG_DIR CONFIG_NAME   ->  {"config": {...}, "base": {...}}

``base`` is verl's own ``ppo_trainer`` (the keys verl reads, with their defaults); ``base_raw`` the
same unresolved, so a key derived by interpolation (``actor.rollout_n: ${…rollout.n}``) can be told apart.
"""

from __future__ import annotations

import json
import sys
import warnings


def _container(cfg) -> dict:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation only resolvable at run time
        return OmegaConf.to_container(cfg, resolve=False)


def main(argv: list[str]) -> int:
    from hydra import compose, initialize_config_dir, initialize_config_module
    from omegaconf import OmegaConf

    config_dir, config_name = argv[1], argv[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # searchpath entries of the user's machine (file:///dfs/...) do not exist here
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            config = _container(compose(config_name=config_name))
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            base_cfg = compose(config_name="ppo_trainer")
            base = _container(base_cfg)
            base_raw = OmegaConf.to_container(base_cfg, resolve=False)
    config.pop("hydra", None)
    json.dump({"config": config, "base": base, "base_raw": base_raw}, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
