"""A study's ``primary_metric``, read from its spec file (``specs/study-*.yaml`` with ``kind: study``).

The cell runs carry the study's name (tag ``rlreg.study``) but not its primary metric, so the
study file in the specs directory (``$RLREG_SPECS_DIR``, else ``./specs``) is asked; without one the
default primary metric applies (``analysis.compare.DEFAULT_PRIMARY``).
"""

from __future__ import annotations

import os
from pathlib import Path


def primary_metric(study: str, specs_dir: str | Path | None = None) -> str | None:
    import yaml

    root = Path(specs_dir or os.environ.get("RLREG_SPECS_DIR") or "specs")
    if not root.is_dir():
        return None
    for path in sorted(root.glob("study-*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue  # a broken study file is `rlreg study`'s error to report, not compare's
        if isinstance(data, dict) and data.get("kind") == "study" and data.get("name", path.stem) == study:
            value = data.get("primary_metric")
            return str(value) if value else None
    return None
