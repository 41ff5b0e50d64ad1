"""rl-registry: declarative, MLflow-tracked experiment specs for LLM RL post-training.

Flow: spec YAML -> ``registry`` (load, extends, validate, hash, plan stages, cache lookup,
MLflow runs) -> ``runners/<stage>.py`` -> MLflow store -> ``analysis`` -> reports.
"""

__version__ = "0.1.0"
