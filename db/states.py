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
# The internal event types (the Standard Webhooks body's `type`; the provider adapters turn their
# gateways' events into these). `payment_events.event_type` holds the gateway's own type.
EVENT_TYPES = (
    "payment.processing",
    "payment.succeeded",
    "payment.failed",
    "payment.canceled",
    "payment.refunded",
    "dispute.opened",
    "dispute.won",
    "dispute.lost",
)
# Where an inbox event stands (see the migrations for each meaning).
EVENT_STATUSES = ("received", "processing", "applied", "ignored", "unmatched", "rejected", "dead")
FINAL_EVENT_STATUSES = ("applied", "ignored", "unmatched", "rejected", "dead")
# Final statuses ops can replay from the console.
PROBLEM_EVENT_STATUSES = ("unmatched", "rejected", "dead")
