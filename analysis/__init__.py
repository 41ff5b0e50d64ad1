"""Read the MLflow store and turn runs into comparisons, plots and reports.

Reads MLflow only; never imports ``runners`` (architecture.md). Modules:

- ``runs``     find parent runs by spec name / run id / tag filter; children; metric histories.
- ``arms``     what is compared: runs, a study's arms (one run per seed), ``--where`` matches.
- ``metrics``  what a metric is by name (proportion → percent, intervals in [0, 1]).
- ``stats``    Welch, Student-t, Wilson, Holm, clipping, the verdict wording.
- ``paired``   per-prompt paired comparison (bootstrap, McNemar, sign-flip); ``power`` MDE, n needed.
- ``verdict``  a difference with its unit of replication and what its interval covers.
- ``entries``  the per-entry ``eval/entries.json`` tables, read through MLflow.
- ``compare``  one row per metric, one column per arm (value or mean ± CI), differences vs the first.
- ``render``   a comparison as text, Markdown, JSON or CSV.
- ``plots``    matplotlib (Agg) figures: metrics over steps, the ``--with_stats`` panel, repeats.
- ``report``   Markdown / self-contained HTML reports, logged to MLflow as a ``report`` run.
- ``cli``      the ``rlreg compare``, ``rlreg report`` and ``rlreg plot`` click commands (``curves``).
- ``synthetic`` runs written in the registry's run contract without running stages (tests, benchmark).
- ``tool_entropy`` the entropy-after-tool-call figure (the entropy stage's; reports reuse it).
"""
