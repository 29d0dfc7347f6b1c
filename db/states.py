"""State vocabularies spelled as in the database (no SQLAlchemy here: workers import this)."""

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


# payment_events (jobs/payments).
# Event types a gateway sends, spelled as in the webhook body and `payment_events.event_type`.
EVENT_TYPES = ("payment.processing", "payment.succeeded", "payment.failed", "payment.refunded")
# Where an inbox event stands (see the migration for each meaning).
EVENT_STATUSES = ("received", "processing", "applied", "ignored", "unmatched", "rejected")
FINAL_EVENT_STATUSES = ("applied", "ignored", "unmatched", "rejected")
