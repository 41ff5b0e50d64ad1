"""Studies: arms × grid points × seeds of specs, run as one tracked, cached, resumable unit.

model.py (the study file), load.py (find/validate), cells.py (expansion, ids, per-cell specs),
state.py (what the store says about each cell), runner.py (``rlreg study run`` and the cell
process), executors.py / ray_executor.py (local subprocesses, Ray tasks), dryrun.py, status.py,
cli.py. docs/studies.md.
"""
