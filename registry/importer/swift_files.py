"""Read an ms-swift SFT experiment directory (hardtry ``exps/full*``, ``exps/lora*``) without swift.

Such a directory holds ``configs/`` (or ``conf/``) ``sft_config.yaml`` — ``swift sft`` arguments as a
YAML mapping — and a ``train_local.sh`` (top level or ``scripts/``) running
``NPROC_PER_NODE=4 … swift sft --config …/sft_config.yaml``; a merge script, the BFCL eval and vLLM
configs and ``eval5_results/*.csv`` beside them. ``config_argv`` turns the YAML into the argument
list exactly as ms-swift's CLI does (``swift/cli/main.py`` ``parse_yaml_args``), so the user's
arguments can be compared with the spec's ``swift sft`` command one by one.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import UsageError
from registry.importer.hydra_files import CONFIG_DIRS, _load_yaml

ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class SwiftCommand:
    """The ``swift sft`` call of a shell script."""

    script: str
    """Path of the script, relative to the experiment directory."""
    env: dict[str, str]
    """``VAR=value`` prefixes of the command (NPROC_PER_NODE, CUDA_VISIBLE_DEVICES, …)."""
    config: str | None
    """The ``--config`` (ms-swift 3) or leading ``*.yaml`` (ms-swift 4) argument, as written."""
    args: list[str]
    """Arguments after the config (they override its keys: argparse keeps the last)."""


@dataclass
class SftExperimentDir:
    root: Path
    config_dir: Path
    config_path: Path
    config: dict[str, Any]
    """The sft config as YAML loaded it (swift's own loader is ``yaml.safe_load`` too)."""
    command: SwiftCommand | None
    files: dict[str, Any] = field(default_factory=dict)
    """Every other YAML in the config dir by stem (eval, vLLM, convert configs)."""
    other_files: list[str] = field(default_factory=list)
    """Non-YAML files of the config dir (ds_config.json, …), relative to the experiment dir."""
    scripts: dict[str, str] = field(default_factory=dict)
    results: list[Path] = field(default_factory=list)
    """``eval5_results/*.csv`` (BFCL summaries of their runs)."""

    def argv(self) -> list[str]:
        """The user's ``swift sft`` arguments: the config's, then the script's own."""
        return config_argv(self.config) + (self.command.args if self.command else [])


def _joined(text: str) -> str:
    return re.sub(r"\\\s*\n", " ", text)


def find_swift_command(scripts: dict[str, str]) -> SwiftCommand | None:
    """The first ``swift sft …`` command in the scripts (line continuations joined)."""
    for name, text in scripts.items():
        for line in _joined(text).splitlines():
            if not re.search(r"(^|[\s/])swift\s+sft(\s|$)", line) or line.lstrip().startswith("#"):
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            i = next(i for i, w in enumerate(words) if w.endswith("swift") and words[i + 1: i + 2] == ["sft"])
            env = dict(w.split("=", 1) for w in words[:i] if ENV_ASSIGN.match(w))
            rest = words[i + 2:]
            config = None
            if rest[:1] == ["--config"] and len(rest) > 1:
                config, rest = rest[1], rest[2:]
            elif rest and rest[0].endswith((".yaml", ".yml", ".json")):
                config, rest = rest[0], rest[1:]
            return SwiftCommand(name, env, config, rest)
    return None


def _config_file(config_dir: Path, command: SwiftCommand | None, scripts: dict[str, str]) -> Path | None:
    """The sft config the script names (by file name, in the config dir), else ``sft_config*.yaml``."""
    if command and command.config:
        name = Path(_expand(command.config, scripts.get(command.script, ""))).name
        if "$" in name:
            name = "sft_config.yaml"
        path = config_dir / name
        if not path.is_file():
            raise UsageError(f"{config_dir.parent / command.script}: `swift sft` reads {command.config}, but "
                             f"{config_dir.name}/{name} is not there (put the experiment's sft config there)")
        return path
    found = sorted(config_dir.glob("sft_config*.yaml")) + sorted(config_dir.glob("sft_config*.yml"))
    return found[0] if found else None


def _expand(word: str, script: str) -> str:
    """``$VAR``/``${VAR}`` replaced by the script's own ``VAR="…"`` assignment (as far as it is literal)."""
    def value(m: re.Match) -> str:
        found = re.search(rf"""^\s*(?:export\s+)?{m.group(1) or m.group(2)}=["']?([^"'\n]*)""", script, re.MULTILINE)
        return found.group(1) if found else m.group(0)

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, word)


def read_scripts(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8", errors="replace") for p in sorted(root.rglob("*.sh"))}


def is_sft_dir(root: Path) -> bool:
    """An ms-swift SFT experiment: an ``sft_config*.yaml`` in its config dir, or a script running ``swift sft``."""
    config_dir = next((root / d for d in CONFIG_DIRS if (root / d).is_dir()), None)
    if config_dir is not None and any(config_dir.glob("sft_config*.y*ml")):
        return True
    return find_swift_command(read_scripts(root)) is not None


def read_sft_experiment(root: Path) -> SftExperimentDir:
    root = Path(root)
    scripts = read_scripts(root)
    command = find_swift_command(scripts)
    config_dir = next((root / d for d in CONFIG_DIRS if (root / d).is_dir()), None)
    if config_dir is None:
        raise UsageError(f"{root}: no configs/ (or conf/) directory with the experiment's sft_config.yaml")
    path = _config_file(config_dir, command, scripts)
    if path is None:
        raise UsageError(f"{config_dir}: no sft_config.yaml (the `swift sft` arguments of the experiment)")
    config = _load_yaml(path)
    if not isinstance(config, dict) or not config:
        raise UsageError(f"{path}: expected a mapping of `swift sft` arguments (model: …, dataset: […], …), "
                         f"got {type(config).__name__}")
    bad = [k for k in config if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    if bad:
        raise UsageError(f"{path}: {bad[0]!r}: not a swift argument name (names are identifiers like lora_rank)")
    files = {}
    for p in sorted(config_dir.glob("*.y*ml")):
        if p != path:
            files[p.stem] = _load_yaml(p)
    other = [str(p.relative_to(root)) for p in sorted(config_dir.iterdir()) if p.is_file() and p.suffix not in (".yaml", ".yml")]
    results = sorted((root / "eval5_results").glob("*.csv")) if (root / "eval5_results").is_dir() else []
    return SftExperimentDir(root, config_dir, path, config, command, files, other, scripts, results)


def config_argv(config: dict[str, Any]) -> list[str]:
    """``swift sft CONFIG.yaml``'s argument list: ``--key value`` per key, a list's items as
    separate values, a mapping as JSON, everything else through ``str()`` (ms-swift 4.6.0
    ``swift/cli/main.py`` ``parse_yaml_args``; 3.x did the same for ``--config``)."""
    argv: list[str] = []
    for key, value in config.items():
        if key == "ENV":
            continue  # environment variables, not arguments
        argv.append(f"--{key}")
        if isinstance(value, list):
            argv += [str(v) for v in value]
        else:
            argv.append(json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value))
    return argv


def parse_argv(argv: list[str]) -> dict[str, list[str]]:
    """``--key v1 v2 --flag`` -> ``{key: [v1, v2], flag: []}``; a repeated key keeps the last
    (argparse's rule, so the script's arguments win over the config's)."""
    out: dict[str, list[str]] = {}
    key = None
    for word in argv:
        if word.startswith("--") and len(word) > 2 and not _is_number(word):
            key = word[2:].replace("-", "_")
            out[key] = []
        elif key is None:
            raise UsageError(f"swift arguments: {word!r} before any --name (expected --name value …)")
        else:
            out[key].append(word)
    return out


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


# BFCL's multi-turn summary columns by test category (the overall column averages all four, so a
# multi_turn_base run's score is its `Base` column: hardtry's RESULT.csv lists those values)
CATEGORY_COLUMNS = {"multi_turn_base": "Base", "multi_turn_miss_func": "Miss Func",
                    "multi_turn_miss_param": "Miss Param", "multi_turn_long_context": "Long Context"}


def recorded_accuracies(paths: list[Path], test_category: str | None) -> tuple[str, list[str]]:
    """(column, its value in each eval5_results CSV as written): the test category's column of
    their BFCL summaries, else ``Multi Turn Overall Acc``."""
    import csv

    column = CATEGORY_COLUMNS.get(str(test_category), "Multi Turn Overall Acc")
    out = []
    for p in paths:
        try:
            rows = list(csv.DictReader(p.read_text(encoding="utf-8", errors="replace").splitlines()))
        except csv.Error:
            continue
        for row in rows[:1]:
            value = row.get(column)
            if value:
                out.append(value.strip())
    return column, out
