"""Read the MLflow store and turn runs into comparisons, plots and reports.

Reads MLflow only; never imports ``runners`` (architecture.md). Modules:

- ``runs``     find parent runs by spec name / run id / tag filter; children; metric histories.
- ``stats``    difference of means with a Welch confidence interval, and its verdict.
- ``compare``  one row per metric, one column per run (value or mean ± CI), pairwise differences.
- ``render``   a comparison as text, Markdown, JSON or CSV.
- ``plots``    matplotlib (Agg) figures: metrics over steps, the ``--with_stats`` panel, repeats.
- ``report``   Markdown / self-contained HTML reports, logged to MLflow as a ``report`` run.
- ``cli``      the ``rlreg compare`` and ``rlreg report`` click commands.
- ``synthetic`` runs written in the registry's run contract without running stages (tests, benchmark).
- ``tool_entropy`` the entropy-after-tool-call figure (the entropy stage's; reports reuse it).
"""
