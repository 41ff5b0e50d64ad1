"""Where prompt records come from: a local JSON / JSONL / parquet file, a ``datasets``
``save_to_disk`` directory (a Dataset, or a DatasetDict with a ``split``), or a local dataset
directory holding one file set per split (``train.parquet``, ``data/test-00000-of-00001.parquet``…).

``save_to_disk`` directories are read with pyarrow directly (the ``datasets`` library is not a
dependency): a Dataset dir holds ``state.json`` (``_data_files``: the shard names), ``dataset_info.json``
and ``data-XXXXX-of-NNNNN.arrow`` shards in Arrow's IPC *stream* format; a DatasetDict dir holds
``dataset_dict.json`` (``{"splits": [...]}``) and one Dataset dir per split. Hugging Face Hub ids are
refused: nothing is downloaded (offline machines; reproducible inputs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from registry.errors import InputDataError, UsageError

FILE_SUFFIXES = (".parquet", ".jsonl", ".json", ".arrow")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_not_hub_id(raw: str, resolved: Path) -> None:
    """``org/name`` that is not a local path: say how to bring it here instead of a bare 'not found'."""
    if not resolved.exists() and _HUB_ID.match(raw) and not raw.startswith(("./", "../")):
        raise UsageError(
            f"generate.dataset: '{raw}' is not a local path and looks like a Hugging Face Hub id; hub datasets "
            "are not downloaded (this machine may be offline, and runs must read a fixed copy) — on a machine "
            f"with network run `datasets.load_dataset('{raw}').save_to_disk(DIR)` and set generate.dataset: DIR "
            "(with generate.split)"
        )


def load_source(path: Path, split: str | None = None) -> list[dict[str, Any]]:
    """Raw records of a file or a dataset directory (``split`` picks one split of a directory)."""
    from runners.generate.datasets import load_records

    if path.is_file():
        if split:
            raise UsageError(f"generate.split: '{split}' given but {path} is a single file (drop split, or "
                             "point generate.dataset at the dataset directory)")
        return _arrow_records([path]) if path.suffix == ".arrow" else load_records(path)
    if not path.is_dir():
        raise InputDataError(f"{path}: dataset does not exist (set generate.dataset to a JSON/JSONL/parquet file, a "
                             "save_to_disk directory or a local dataset directory)")
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if not split:
            raise UsageError(f"{path}: a DatasetDict with splits {splits}; set generate.split")
        if split not in splits or not (path / split).is_dir():
            raise UsageError(f"{path}: no split '{split}' (splits: {', '.join(splits)}); fix generate.split")
        return _saved_dataset(path / split)
    if (path / "state.json").is_file():
        if split:
            saved = json.loads((path / "state.json").read_text()).get("_split")
            if saved and saved != split:
                raise UsageError(f"{path}: a saved Dataset of split '{saved}', not '{split}'; fix generate.split")
        return _saved_dataset(path)
    return _split_files(path, split)


def _saved_dataset(directory: Path) -> list[dict[str, Any]]:
    state = json.loads((directory / "state.json").read_text())
    names = [f["filename"] for f in state.get("_data_files", [])]
    shards = [directory / n for n in names] if names else sorted(directory.glob("data-*.arrow"))
    missing = [str(s) for s in shards if not s.is_file()]
    if missing or not shards:
        raise InputDataError(f"{directory}: save_to_disk shards missing ({', '.join(missing) or 'none listed'})")
    return _arrow_records(shards)


def _arrow_records(shards: list[Path]) -> list[dict[str, Any]]:
    import pyarrow as pa

    from runners.generate.datasets import _json_safe

    rows: list[dict[str, Any]] = []
    for shard in shards:
        try:
            with pa.memory_map(str(shard)) as source:
                try:
                    table = pa.ipc.open_stream(source).read_all()  # what save_to_disk writes
                except pa.ArrowInvalid:
                    source.seek(0)
                    table = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputDataError(f"{shard}: cannot read the Arrow file ({exc})") from None
        rows += [_json_safe(r) for r in table.to_pylist()]
    return rows


def _split_files(directory: Path, split: str | None) -> list[dict[str, Any]]:
    """A local dataset directory: the files of ``split`` (``<split>.*``, ``<split>-*``, ``data/<split>…``,
    ``<split>/*``), or the directory's only data file when no split is given."""
    from runners.generate.datasets import load_records

    def data_files(pattern: str) -> list[Path]:
        return sorted(p for p in directory.glob(pattern) if p.is_file() and p.suffix in FILE_SUFFIXES)

    if split:
        for pattern in (f"{split}.*", f"{split}-*", f"data/{split}.*", f"data/{split}-*", f"{split}/*"):
            files = data_files(pattern)
            if files:
                break
        else:
            present = sorted({p.name for p in data_files("*") + data_files("data/*")})
            raise UsageError(f"{directory}: no files for split '{split}' (data files: {', '.join(present) or 'none'}); "
                             "fix generate.split")
    else:
        files = data_files("*") + data_files("data/*")
        if len(files) != 1:
            raise UsageError(f"{directory}: {len(files)} data files ({', '.join(p.name for p in files[:6])}); "
                             "set generate.split to pick one split")
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += _arrow_records([f]) if f.suffix == ".arrow" else load_records(f)
    return rows
