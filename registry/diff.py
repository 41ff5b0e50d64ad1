"""Key-aware diff of two resolved specs (dotted keys, changed keys only by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.flatten import flatten

MISSING = object()


@dataclass
class Change:
    key: str
    left: Any
    right: Any

    @property
    def kind(self) -> str:
        if self.left is MISSING:
            return "added"
        if self.right is MISSING:
            return "removed"
        return "changed" if self.left != self.right else "same"


def diff_specs(left: dict[str, Any], right: dict[str, Any], include_same: bool = False) -> list[Change]:
    """Compare two spec mappings leaf by leaf. A section present on one side only shows as its
    leaf keys added/removed, so ``sft: null`` vs a full ``sft`` section lists what changes."""
    a, b = flatten(left), flatten(right)
    changes = []
    for key in sorted(set(a) | set(b), key=_order_key):
        c = Change(key, a.get(key, MISSING), b.get(key, MISSING))
        if c.kind != "same" or include_same:
            changes.append(c)
    return _collapse_null_sections(changes)


def _order_key(key: str) -> tuple:
    # name/description-level keys first, then sections in file order
    top = ["name", "extends", "description", "experiment", "tags", "seed", "pipeline"]
    head = key.split(".", 1)[0]
    return (top.index(head) if head in top else len(top), key)


def _collapse_null_sections(changes: list[Change]) -> list[Change]:
    """`sft: null` on one side vs `sft.x`, `sft.y` on the other → keep the leaf rows but drop the
    bare `sft` row whose only content is the null."""
    keys = {c.key for c in changes}
    return [
        c for c in changes
        if not (c.kind != "same" and (c.left is None or c.right is None)
                and any(k.startswith(c.key + ".") for k in keys))
    ]


def fmt(value: Any) -> str:
    if value is MISSING:
        return "—"
    import json

    return json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
