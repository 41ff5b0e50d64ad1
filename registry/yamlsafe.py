"""Bounded, strict YAML for spec files: limits are checked before anything walks the document.

- at most ``MAX_BYTES`` per file and regular files only (a FIFO or a device never blocks a read);
- at most ``MAX_NODES`` nodes *after alias expansion* (a ~1 KB "billion laughs" alias bomb expands
  to 10^9 nodes: PyYAML shares the aliased objects, but validation, deep-merge and dumping walk
  every copy), counted on the composed node graph with memoisation, so the count itself is cheap;
- duplicate keys in one mapping are an error naming both lines (PyYAML keeps the last silently);
- an integer too long for Python's int() limit is a YAML error with its line, not a ValueError.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.YAMLError):
    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader + node budget + duplicate-key refusal."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_size(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not hasattr(key_node, "value") or not isinstance(key_node.value, str):
                    continue
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConstructorError(
                        None, None,
                        f"duplicate key '{key_node.value}' (lines {seen[key]} and {line}; keep one)",
                        key_node.start_mark,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise ConstructorError(None, None, f"integer with {len(node.value)} digits is out of range "
                                   "(no spec field takes more than 20 digits)", node.start_mark) from None


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


def _check_size(root: Node) -> None:
    """Expanded node count, memoised per node object (aliases point at the same object)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 0) for c in children)
        if total > MAX_NODES:
            raise YamlLimitError(
                f"document expands to more than {MAX_NODES:,} values (an alias bomb, or far too big "
                "for a spec; use fewer aliases)", node.start_mark)
        sizes[id(node)] = total


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_regular_file(path: Path, max_bytes: int = MAX_BYTES) -> str | None:
    """None when ``path`` is a regular file of at most ``max_bytes``, else what is wrong."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, device or directory; give a regular file)"
    if st.st_size > max_bytes:
        return f"{st.st_size:,} bytes, more than the {max_bytes:,} a spec may have (a spec is a small file)"
    return None


def load(text: str) -> Any:
    """``yaml.safe_load`` with the bounds above (what ``yaml.load(text, BoundedLoader)`` does)."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
