"""Digests of files a spec names by path (a convert ``data.source``, an eval dataset…), remembered
by stat fingerprint so that computing a cache key does not re-read a multi-GB source on every run.

One small JSON per path under ``$RLREG_HOME/fingerprints/``. The same rule as for cached outputs
(docs/operations.md, "Trust model of the stage cache"): a matching fingerprint is trusted, anything
else is re-hashed, and racily fresh files are not remembered.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from registry import hashing


def memo_digest(path: Path, memo_dir: Path) -> str:
    path = Path(path).resolve()
    entry_file = memo_dir / f"{hashing.sha256_text(str(path))[:32]}.json"
    try:
        entry = json.loads(entry_file.read_text())
        if entry["path"] == str(path) and entry["fingerprint"] == hashing.fingerprint_path(path)[0]:
            return entry["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no entry, a broken one, or the file changed: hash it
    digest, fingerprint = hashing.digest_and_fingerprint(path)
    if fingerprint is not None:
        try:
            memo_dir.mkdir(parents=True, exist_ok=True)
            tmp = entry_file.with_name(f"{entry_file.name}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_text(json.dumps({"path": str(path), "fingerprint": fingerprint, "digest": digest}))
            os.replace(tmp, entry_file)
        except OSError:  # a read-only RLREG_HOME only costs speed
            pass
    return digest
