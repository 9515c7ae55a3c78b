"""Which keys of a model's settings set only how fast a job runs, never what it computes."""

from __future__ import annotations

# Not part of a run's identity: changing them re-runs no finished job.
SPEED_KEYS = ("workers", "loader_workers")


def without_speed_keys(section: dict) -> dict:
    """``section`` less the keys that only set how fast a job runs: they reach the job as threads,
    a resource, a command-line option or a --speed file, so changing them never re-runs a finished job."""
    return {k: v for k, v in section.items() if k not in SPEED_KEYS}
