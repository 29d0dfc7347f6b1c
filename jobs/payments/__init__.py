"""Payment-gateway callbacks: gateway adapters (providers/: Stripe, Paystack, Standard Webhooks) for
the signed webhook intake (dashboard/webhooks.py), an inbox of raw events, processing in batches
under the shipments' row locks (payments, partial refunds, chargebacks, each once), the catch-up
import (`skyport payments import`), and reconciliation (the gateway simulator is a tool of the
repository: demo/payments_simulator.py).

Functions for the dashboard: `problem_events(conn)`, `replay_event(conn, provider, event_id, by)`,
`drift(conn)`, `count_by_status(conn)`.
"""

from jobs.payments.apply import Outcome, Result
from jobs.payments.drain import drain, process_event
from jobs.payments.inbox import count_by_status, get_event, problem_events, receive, replay_event
from jobs.payments.reconcile import drift, reconcile, requeue_stuck

__all__ = [
    "Outcome",
    "Result",
    "count_by_status",
    "drain",
    "drift",
    "get_event",
    "problem_events",
    "process_event",
    "receive",
    "reconcile",
    "replay_event",
    "requeue_stuck",
]
