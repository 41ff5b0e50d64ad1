"""Stage runners: one module (or package) per stage kind, each ``run(stage_spec, ctx) -> StageResult``.

Shared building blocks live in ``runners/common`` (math), ``runners/modeling`` (tiny models,
loading, chat template) and ``runners/reward.py``; a stage runner never imports another stage's runner.
"""
