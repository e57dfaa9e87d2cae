"""Replay: rebuild projections from the log into a shadow store, verify, swap; copy a slice;
move a consumer group forward.

* :mod:`~streams.replay.rebuild` - plan, rebuild, verify, swap, copy (one process);
* :mod:`~streams.replay.jobs` - the same rebuild split by partition over processes;
* :mod:`~streams.replay.reset` - move a group (and the store's inbox) forward.
"""

from streams.replay.jobs import rebuild_parallel
from streams.replay.rebuild import (
    CopyReport,
    Plan,
    Progress,
    RebuildReport,
    Verification,
    catch_up,
    compare,
    copy_slice,
    plan,
    rebuild,
    state_hashes,
    swap,
    verify,
    verify_aligned,
)
from streams.replay.reset import PartitionReset, ResetPlan, ResetTarget, execute_reset, plan_reset

__all__ = [
    "CopyReport",
    "PartitionReset",
    "Plan",
    "Progress",
    "RebuildReport",
    "ResetPlan",
    "ResetTarget",
    "Verification",
    "catch_up",
    "compare",
    "copy_slice",
    "execute_reset",
    "plan",
    "plan_reset",
    "rebuild",
    "rebuild_parallel",
    "state_hashes",
    "swap",
    "verify",
    "verify_aligned",
]
