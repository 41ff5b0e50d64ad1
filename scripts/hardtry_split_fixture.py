"""Write tests/fixtures/hardtry_split.json: which input records hardtry's converter puts in train and test.

hardtry's ``src/hardtry/utils/convert_messages_to_verl.py`` loads the records with Hugging Face
``datasets``, keeps ``max_samples`` of them (``ds.shuffle(seed)`` first when ``shuffle: true``),
then calls ``ds.train_test_split(test_size=test_size, seed=seed)``. This script runs exactly those
``datasets`` calls on records numbered 0..n-1 and writes the numbers that land in each split, in
the order of the rows. Run it with a Python that has ``datasets`` (the verl venv does):

    .venv-verl/bin/python scripts/hardtry_split_fixture.py -o tests/fixtures/hardtry_split.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (records in the file, max_samples, shuffle, test_size, seed)
SETTINGS = [
    (1200, 1000, False, 0.05, 42),  # verl7/verl8: the first 1000 of hardgen, 50 test rows
    (60, 40, True, 0.05, 42),  # shuffle before the cut
    (37, None, False, 0.2, 1),  # keep all; shuffle is ignored without max_samples (their `if`)
    (37, None, True, 0.2, 1),
    (100, None, False, 0.07, 3),  # ceil(0.07 * 100) = 8 in floating point, not 7
    (25, 30, False, 0.1, 0),  # max_samples above the record count
]


def split_indices(n: int, max_samples: int | None, shuffle: bool, test_size: float, seed: int) -> dict:
    from datasets import Dataset

    ds = Dataset.from_dict({"i": list(range(n))})
    if max_samples is not None and max_samples > 0:  # their converter's condition, verbatim in effect
        keep = min(int(max_samples), len(ds))
        if shuffle:
            ds = ds.shuffle(seed=seed)
        ds = ds.select(range(keep))
    parts = ds.train_test_split(test_size=test_size, seed=seed)
    return {"records": n, "max_samples": max_samples, "shuffle": shuffle, "test_size": test_size, "seed": seed,
            "train": list(parts["train"]["i"]), "test": list(parts["test"]["i"])}


def main() -> None:
    import datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("tests/fixtures/hardtry_split.json"))
    args = parser.parse_args()
    cases = [split_indices(*s) for s in SETTINGS]
    doc = {"generated_with": f"datasets {datasets.__version__}", "cases": cases}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc) + "\n")
    print(f"{len(cases)} settings -> {args.output}")


if __name__ == "__main__":
    main()
