"""MLflow's limits on what a spec puts into the store, checked at validation time (so a run is
never created and then refused halfway, leaving a parent RUNNING). Values from
mlflow/utils/validation.py (MLflow 3.x)."""

from __future__ import annotations

import posixpath
import re

MLFLOW_KEY_RE = re.compile(r"^[/\w.\- :]*$")  # MLflow's tag/param/metric name rule (not Windows)
MAX_KEY_LENGTH = 250
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_TAGS = 100
TAG_PREFIX = "spec.tag."
"""User tags land on the parent run as ``spec.tag.<key>``."""


def check_mlflow_key(key: str, prefix: str = "") -> str | None:
    """None if MLflow accepts ``prefix + key`` as a tag/param key, else what is wrong + the fix."""
    full = prefix + key
    if not key:
        return "an empty key (give it a name)"
    if len(full) > MAX_KEY_LENGTH:
        return (f"key '{key[:40]}…' is {len(key)} characters; MLflow allows {MAX_KEY_LENGTH - len(prefix)} "
                "here (shorten it)")
    if not MLFLOW_KEY_RE.match(full):
        bad = sorted({c for c in key if not MLFLOW_KEY_RE.match(c)})
        return (f"key '{key}' has characters MLflow refuses ({' '.join(map(repr, bad))}); use letters, digits, "
                "_ - . : / and spaces (e.g. owner_lab)")
    norm = posixpath.normpath(full)
    if norm != full or norm.startswith(("..", "/")):
        return f"key '{key}' is not a clean path for MLflow (no leading '/', '//', './' or '..'; e.g. team/owner)"
    return None


def check_experiment_name(name: str) -> str | None:
    from registry.redact import redact_text

    if redact_text(name) != name:  # an experiment name goes to the store as is: no secret in it
        return "the experiment name looks like it holds a secret (a token or a URL password; rename it)"
    if not name.strip():
        return "the experiment name is empty (give one, e.g. rl-registry)"
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        return f"the experiment name is {len(name)} characters; MLflow allows {MAX_EXPERIMENT_NAME_LENGTH} (shorten it)"
    if any(ord(c) < 32 for c in name):
        return "the experiment name has control characters (use plain text, e.g. rl-registry)"
    return None
