"""Job states, spelled as in the `jobs.state` column (no SQLAlchemy here: workers import this)."""

from enum import StrEnum


class JobState(StrEnum):
    """A job's state, spelled as in the `jobs.state` column."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


JOB_STATES = tuple(JobState)
FINAL_STATES = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
