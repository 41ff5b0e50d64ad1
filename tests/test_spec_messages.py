"""Every spec error message says the fix (issue 16): a corpus of ~950 wrong specs derived from the
schema (tests/_bad_specs.py); each message must carry a fix clause, and every numeric field's
range error names the range and an example."""

from __future__ import annotations

import pytest
from _bad_specs import corpus, has_fix, messages


@pytest.fixture(scope="module")
def found():
    return messages()


def test_every_message_carries_a_fix(found):
    lacking = [(label, line) for label, line in found if not has_fix(line)]
    assert lacking == []
    assert not [line for _, line in found if line.startswith("CRASH")]


def test_every_numeric_edge_value_refused_or_legal(found):
    refused = {label for label, _ in found}
    for label, _ in corpus():
        if any(v in label for v in ("=inf", "=-inf", "=nan", "=1000000000000.0", "=1000000000000", "=18446744073709551616")):
            assert label in refused, label


def test_range_message_names_range_and_example(found):
    lines = [line for label, line in found if label == "train.optimizer.lr=inf"]
    assert lines and "must be a finite number > 0 and ≤ 1.0, got inf (e.g. lr: 1e-06)" in lines[0]
