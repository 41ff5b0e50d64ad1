"""What a metric is — a proportion or a plain number — decided by its name, never by its values.

Why by name: a value-based guess ("all values in [0, 1]") flipped the formatting of a row when one
interval bound left [0, 1], and printed BFCL's tool-name accuracy in points next to eval/accuracy
as a fraction. A proportion is printed in percent and its differences in points everywhere (text,
Markdown, HTML); JSON and CSV keep the raw fractions. Proportions also get intervals clipped to
[0, 1] (``analysis.stats``).
"""

from __future__ import annotations

import re

# eval/accuracy, eval/tool_name_accuracy, eval/bfcl/live/overall_acc, eval/format_valid_rate, …
PROPORTION_RE = re.compile(r"(accuracy|(^|[/_])acc$|_rate$|(^|[/_])pass@\d+$)")
# logged next to a proportion but not one: counts, seconds, lengths
NOT_PROPORTION_RE = re.compile(r"(_count|_seconds|seconds|_length|_tokens|/repeats|repeats_failed|inference_errors)$")

# The per-entry column holding the 0/1 outcome a headline proportion averages (``eval/entries.json``).
ENTRY_COLUMNS = {
    "eval/accuracy": "correct",
    "eval/format_valid_rate": "format_valid",
    "eval/tool_name_accuracy": "tool_name_correct",
    "eval/arg_accuracy": "args_correct",
}


def base_key(metric: str) -> str:
    """``eval/accuracy_mean`` → ``eval/accuracy`` (the per-repeat key)."""
    return metric.removesuffix("_mean")


def is_proportion(metric: str) -> bool:
    """A fraction in [0, 1] by definition (accuracy, pass rate, valid rate)."""
    key = base_key(metric).lower()
    return bool(PROPORTION_RE.search(key)) and not NOT_PROPORTION_RE.search(key)


def entry_column(metric: str) -> str | None:
    """The ``eval/entries.json`` column a headline metric is the mean of, if any."""
    return ENTRY_COLUMNS.get(base_key(metric))


def scale(metric: str) -> tuple[float, str, str, str]:
    """(factor, unit of a value, unit of a difference, number format) for printing ``metric``."""
    if is_proportion(metric):
        return 100.0, "%", " pts", ".1f"
    return 1.0, "", "", ".4g"
