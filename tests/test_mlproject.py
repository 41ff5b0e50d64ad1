"""MLproject + python_env.yaml: `mlflow run . -P spec=…` must find an environment with exactly
the project's dependencies (domain.md §7: with no environment section MLflow builds an EMPTY env)."""

from __future__ import annotations

from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_python_env_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    expected = ["torch==2.13.0" if d.startswith("torch") else d for d in deps]
    assert env["dependencies"] == expected, "regenerate python_env.yaml from pyproject.toml"
    assert env["python"].count(".") == 2, "pin an exact python version (pyenv cannot download here)"


def test_mlproject_entry_point():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    assert project["python_env"] == "python_env.yaml"
    main = project["entry_points"]["main"]
    assert main["command"] == "python -m registry run {spec} --overrides {overrides}"
    assert main["parameters"]["spec"]["default"] == "demo-grpo"
    assert main["parameters"]["overrides"] == {"type": "string", "default": ""}
