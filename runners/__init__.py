"""Stage runners: one module (or package) per stage kind, each ``run(stage_spec, ctx) -> StageResult``.

Shared building blocks live in ``runners/common`` (math), ``runners/modeling`` (tiny models,
loading, chat template), ``runners/reward.py`` (the shipped rewards) and ``runners/reward_file.py``
(the spec's reward as one callable, custom files included); a stage runner never imports another
stage's runner.
"""
