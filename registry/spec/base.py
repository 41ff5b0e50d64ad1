"""Base class for every spec section: unknown keys are errors, defaults are validated, and
numbers are finite (``allow_inf_nan=False``: ``.inf``/``.nan`` in YAML are refused everywhere).

Shared upper bounds for numeric fields: generous for real GPU runs, small enough that a typo
(10^12 steps, a 2^64 seed) is an error at validation time instead of a hang or an overflow.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict

SEED_MAX = 2**32 - 1
"""Seeds are in [0, 2^32): numpy's and Python's seeders accept every one of them."""
MAX_STEPS = 10_000_000
MAX_RECORDS = 1_000_000_000
MAX_BATCH = 1_000_000
MAX_TOKENS = 2**21
"""Token lengths (prompt, response, context): 2M, beyond any model's context."""
MAX_TEMPERATURE = 100.0
MAX_TIMEOUT_S = 30 * 24 * 3600
MAX_THREADS = 1024
"""Static schema bound; at validation time thread counts must also be ≤ THREADS_PER_CORE × cores."""
THREADS_PER_CORE = 4


class SpecModel(BaseModel):
    """A spec section. ``extra="forbid"`` turns a typo into an error that names the key."""

    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True, allow_inf_nan=False)


def check_cpu_threads(value: int | None) -> int | None:
    """More threads than THREADS_PER_CORE × this machine's cores only oversubscribe it (10^6
    threads made torch hang and ignore SIGTERM)."""
    cores = os.cpu_count() or 1
    if value is not None and value > THREADS_PER_CORE * cores:
        raise ValueError(
            f"cpu_threads {value} is more than {THREADS_PER_CORE} x the {cores} CPU cores of this machine "
            f"(use at most {THREADS_PER_CORE * cores}, e.g. 1 for a tiny model, or null for torch's default)"
        )
    return value
