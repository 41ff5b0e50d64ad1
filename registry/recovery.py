"""Find runs left RUNNING by a process that no longer exists (SIGKILL, OOM, power loss) and mark
them KILLED with a note, so the store never shows a dead run as running.

Each run records ``rlreg.pid`` and ``rlreg.host``; only runs of this host are judged (a pid on
another machine means nothing here).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from registry.cache import host
from registry.store import all_experiment_ids


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def reap_dead_runs(client: Any) -> list[str]:
    exp_ids = all_experiment_ids(client)
    if not exp_ids:
        return []
    runs = client.search_runs(
        experiment_ids=exp_ids,
        filter_string=f"attributes.status = 'RUNNING' and tags.`rlreg.host` = '{host()}'",
        max_results=1000,
    )
    reaped = []
    for run in runs:
        try:
            pid = int(run.data.tags.get("rlreg.pid", "0"))
        except ValueError:
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        # The search is a snapshot: the process may have finished its run and exited since. Once
        # it is dead it can write no more, so a fresh read decides (16 concurrent runs hit this).
        if client.get_run(run.info.run_id).info.status != "RUNNING":
            continue
        client.set_tag(run.info.run_id, "rlreg.note", f"process {pid} on {host()} died without finishing; marked KILLED")
        client.set_terminated(run.info.run_id, "KILLED")
        reaped.append(run.info.run_id)
    return reaped


def remove_stale_tmp(tmp_root: Path) -> list[Path]:
    """Delete stage output directories whose writer process is gone (named <stage>-<key>-<pid>-<id>)."""
    removed = []
    if not tmp_root.is_dir():
        return removed
    for d in tmp_root.iterdir():
        parts = d.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and not pid_alive(int(parts[1])):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
