"""A saved view of the MLflow runs table that groups runs by arm (tag ``rlreg.arm``).

MLflow 3's experiment page loads a shared view state from the experiment tag
``mlflow.sharedViewState.<key>`` when opened with ``?viewStateShareKey=<key>`` (the "Share" button
writes such tags); its ``groupBy`` accepts the compact form ``tag.<aggregate>.<tag key>``. Writing
that tag gives a link that opens the runs table grouped by arm — no clicks, nothing to configure.
"""

from __future__ import annotations

import json
from typing import Any

SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
BY_ARM_KEY = "rlreg-by-arm"


def by_arm_state() -> dict[str, Any]:
    return {"groupBy": "tag.average.rlreg.arm", "groupsExpanded": {}, "runListHidden": False,
            "useGroupedValuesInCharts": True}


def ensure_by_arm_view(client: Any, experiment_id: str) -> str:
    """Write (once) the by-arm view tag on the experiment; returns the page's URL fragment."""
    exp = client.get_experiment(experiment_id)
    tag = SHARED_VIEW_PREFIX + BY_ARM_KEY
    if tag not in (exp.tags or {}):
        client.set_experiment_tag(experiment_id, tag, json.dumps(by_arm_state()))
    return f"#/experiments/{experiment_id}?viewStateShareKey={BY_ARM_KEY}"
