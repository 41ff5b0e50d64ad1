"""The spec's reward as one callable, for every stage that scores responses (train, eval, sft).

``reward.function`` picks a shipped reward from runners/reward.py; ``reward.path`` names a custom
file with verl's signature::

    def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> float | dict

(a dict must carry ``"score"``; verl logs its other keys). The same file, function and kwargs go to
verl as ``reward.custom_reward_function.{path, name, reward_kwargs}`` (:func:`verl_reward_config`),
so the builtin trainer, the builtin eval and verl score alike. A missing file or function, or a
signature verl could not call, is a ``SpecError`` naming ``reward.path``; an exception or a
non-number from inside the function is a :class:`RewardFunctionError` naming the file, the function
and the input that broke it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import numbers
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import RlregError, SpecError
from runners import reward as shipped

EXCERPT = 200


class RewardFunctionError(RlregError):
    """The custom reward function raised or returned something that is not a number (exit 1)."""


def _excerpt(value: Any) -> str:
    """repr of an input or a returned value, cut to EXCERPT characters (a response can be long)."""
    if isinstance(value, str):
        return repr(value if len(value) <= EXCERPT else value[:EXCERPT] + "…")
    text = repr(value)
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"


@dataclass
class Reward:
    """``score(response, ground_truth, extra_info=None) -> float`` plus what identifies the code."""

    label: str
    sha256: str
    score: Callable[..., float]
    requires_think: bool = False

    def __call__(self, response: str, ground_truth: Any, extra_info: dict | None = None) -> float:
        return self.score(response, ground_truth, extra_info)


def custom_path(reward_spec: Any, project_root: Path) -> Path | None:
    """``reward.path`` resolved ($VAR/~ expanded, relative to the project root); None for a shipped reward."""
    if not getattr(reward_spec, "path", None):
        return None
    raw = Path(os.path.expanduser(os.path.expandvars(reward_spec.path)))
    return raw if raw.is_absolute() else project_root / raw


def source_file(reward_spec: Any, project_root: Path) -> Path:
    """The file whose bytes decide the scores: the custom file, or runners/reward.py."""
    return custom_path(reward_spec, project_root) or Path(shipped.__file__).resolve()


def load_function(path: Path, name: str) -> Callable[..., Any]:
    """Import ``name`` from ``path`` the way verl does, checking that verl could call it."""
    where = f"reward.path: {path}"
    if not path.is_file():
        raise SpecError(f"{where}: no such file (set `reward.path` to a Python file, relative to the project root)")
    module_name = "rlreg_reward_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"{where}: not a loadable Python file (give it a .py name)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error while importing it is theirs to fix
        sys.modules.pop(module_name, None)
        raise SpecError(f"{where}: importing it raised {type(exc).__name__}: {exc} (fix the file)") from exc
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == module_name)
        raise SpecError(f"{where}: no function {name!r} (reward.name; functions in the file: {found or 'none'})")
    if inspect.iscoroutinefunction(fn):
        raise SpecError(f"{where}: {name} is async; rlreg's builtin trainer and eval need a plain function")
    return fn


def check_signature(fn: Callable[..., Any], path: Path, name: str, kwargs: dict[str, Any]) -> None:
    """verl calls ``fn(data_source=…, solution_str=…, ground_truth=…, extra_info=…, **reward_kwargs)``."""
    try:
        inspect.signature(fn).bind(data_source="", solution_str="", ground_truth="", extra_info=None, **kwargs)
    except TypeError as exc:
        raise SpecError(
            f"reward.path: {path}: {name}{inspect.signature(fn)} cannot be called as verl calls it ({exc}); "
            "use `def " + name + "(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`"
            + (f" accepting reward.kwargs {sorted(kwargs)}" if kwargs else "")
        ) from exc


def as_score(value: Any, path: Path, name: str, response: Any, ground_truth: Any) -> float:
    """A number (or ``{"score": number, …}``) -> float; anything else is the function's bug."""
    raw = value
    if isinstance(value, dict):
        if "score" not in value:
            raise RewardFunctionError(
                f"{path}: {name} returned a dict without 'score' (keys {sorted(value)[:10]}) for "
                f"solution_str={_excerpt(response)}, ground_truth={_excerpt(ground_truth)}; return a number or {{'score': …}}")
        value = value["score"]
    if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise RewardFunctionError(
            f"{path}: {name} returned {_excerpt(raw)} ({type(raw).__name__}), not a finite number, for "
            f"solution_str={_excerpt(response)}, ground_truth={_excerpt(ground_truth)}")
    return float(value)


def load_reward(reward_spec: Any, project_root: Path, data_source: str = "") -> Reward:
    """The spec's reward, ready to call. ``data_source`` is what verl would pass (the data's column)."""
    path = custom_path(reward_spec, project_root)
    if path is None:
        name = reward_spec.function if reward_spec is not None else shipped.DEFAULT_FUNCTION
        fn = shipped.REWARD_FUNCTIONS[name]
        return Reward(name, shipped.reward_source_hash(), lambda r, gt, extra=None: float(fn(r, gt)),
                      requires_think=name in shipped.THINK_REWARDS)
    name, kwargs = reward_spec.name, dict(reward_spec.kwargs)
    fn = load_function(path, name)
    check_signature(fn, path, name, kwargs)

    def score(response: str, ground_truth: Any, extra_info: dict | None = None) -> float:
        try:
            value = fn(data_source, response, ground_truth, extra_info=extra_info, **kwargs)
        except Exception as exc:
            raise RewardFunctionError(
                f"{path}: {name} raised {type(exc).__name__}: {exc} for solution_str={_excerpt(response)}, "
                f"ground_truth={_excerpt(ground_truth)} (fix the function; verl would fail on it too)") from exc
        return as_score(value, path, name, response, ground_truth)

    return Reward(f"{reward_spec.path}:{name}", hashlib.sha256(path.read_bytes()).hexdigest(), score)


def check_file(reward_spec: Any, project_root: Path) -> None:
    """Without importing it (it may need the verl venv's packages): the custom file exists and
    defines ``name`` at top level. For the verl backend, whose workers import the file themselves."""
    import ast

    path = custom_path(reward_spec, project_root)
    if path is None:
        return
    if not path.is_file():
        raise SpecError(f"reward.path: {path}: no such file (set `reward.path` to a Python file, relative to the project root)")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise SpecError(f"reward.path: {path}: not valid Python ({exc})") from exc
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    if reward_spec.name not in defined:
        raise SpecError(f"reward.path: {path}: no function {reward_spec.name!r} (reward.name; "
                        f"top-level functions: {sorted(defined) or 'none'})")


def verl_reward_config(reward_spec: Any, project_root: Path) -> dict[str, Any]:
    """verl 0.9.1's ``reward.custom_reward_function`` section (the key main_ppo reads; a top-level
    ``custom_reward_function`` is not migrated there)."""
    path = custom_path(reward_spec, project_root)
    if path is None:
        function = reward_spec.function if reward_spec is not None else shipped.DEFAULT_FUNCTION
        return {"path": str(Path(shipped.__file__).resolve()), "name": "compute_score",
                "reward_kwargs": {"reward_function": function}}
    return {"path": str(path), "name": reward_spec.name, "reward_kwargs": dict(reward_spec.kwargs)}
