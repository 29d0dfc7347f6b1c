"""A worker process's flow control: which fetched messages a pause or a limit governs, their
claim (workers/flow_claim.py), and the relay's flow pass that lets slot-waiting jobs go.

When a limited job ends, its worker wakes the relays so that a job waiting for its slot goes at
once; it does so only while slot-waiting jobs were seen lately (parked by this process, or found
by its relay's pass, which runs at every sweep), so that a limit that never binds costs no NOTIFY.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dramatiq
import psycopg

import config
from db import pool
from db.transient import retry_transient
from workers import flow, flow_claim, ledger

logger = logging.getLogger("skyport.flow")

# Slot-waiting jobs seen are remembered for this many relay sweeps.
WAITERS_MEMORY_SWEEPS = 3


class FlowGate:
    def __init__(self) -> None:
        self.watcher = flow.RulesWatcher()
        self.broker: dramatiq.Broker | None = None
        # The relay's `wake_in`: a job parked for a rate comes due then.
        self.wake_in: Callable[[float], None] | None = None
        self._waiters_memory_s = 2.0
        self._waiters_until = 0.0
        self._declared_limits = False
        self._sweep_s = 1.0
        self._unlimited_pass_at = 0.0  # time.monotonic() of the next pass while no limit exists

    def start(self, broker: dramatiq.Broker, cfg: config.Config) -> None:
        self.broker = broker
        self._waiters_memory_s = max(2.0, WAITERS_MEMORY_SWEEPS * cfg.worker.relay_sweep_s)
        self._declared_limits = any(flow.actor_flow(a).concurrency for a in broker.actors.values())
        self._sweep_s = cfg.worker.relay_sweep_s
        self.watcher.refresh()
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()

    @property
    def rules(self) -> flow.Rules:
        return self.watcher.rules

    def paused(self, message: dramatiq.MessageProxy) -> bool:
        return self.rules.paused(message.queue_name, message.actor_name)

    def controlled(self, message: dramatiq.MessageProxy) -> bool:
        """Whether a pause or a limit governs the message's job (the plain claim is cheaper)."""
        actor = self.broker.actors.get(message.actor_name) if self.broker is not None else None
        return actor is not None and (self.paused(message) or self.rules.limited(message.queue_name, actor))

    def slots_awaited(self) -> bool:
        """Whether jobs waited for a slot lately: then a limited job's end wakes the relays."""
        return time.monotonic() < self._waiters_until

    @retry_transient(max_delay_s=60.0)
    def claim(
        self, messages: list[dramatiq.MessageProxy], worker_id: str
    ) -> dict[str, ledger.StartedAttempt]:
        """Claim the jobs of controlled messages; the started ones by message id."""
        assert self.broker is not None
        fetched = [
            flow_claim.Fetched(
                job_id=m.options["job_id"],
                message_id=m.message_id,
                queue=m.queue_name,
                actor=self.broker.actors[m.actor_name],
                args=list(m.args),
                kwargs=dict(m.kwargs),
                reserved_at=_reserved_at(m.options.get("flow_reserved")),
            )
            for m in messages
        ]
        with pool.connection() as conn:
            outcome = flow_claim.claim(conn, worker_id, fetched, self.rules)
        for job_id, reason in outcome.parked.items():
            logger.debug("job %s: waits (%s)", job_id, reason or "resumed meanwhile")
        if "slot" in outcome.parked.values():
            self._waiters_until = time.monotonic() + self._waiters_memory_s
        if outcome.next_due_s is not None and self.wake_in is not None:
            self.wake_in(outcome.next_due_s)
        return outcome.started

    def release_slots(self, conn: psycopg.Connection) -> None:
        """The relay's flow pass (each time the relay wakes): jobs waiting for a slot go as slots
        free up. While no limit exists it runs once a sweep, not never: jobs parked under a limit
        ops have cleared since (or one a deploy removed) must go too."""
        rules = self.rules
        if self.broker is None:
            return
        if not (self._declared_limits or rules.queue_limits or rules.actor_limits):
            now = time.monotonic()
            if now < self._unlimited_pass_at:
                return
            self._unlimited_pass_at = now + self._sweep_s
        if flow_claim.release_slots(conn, rules, self.broker.actors):
            self._waiters_until = time.monotonic() + self._waiters_memory_s


def _reserved_at(value: object) -> float | None:
    """When the relay published a message at its reserved rate start (a message of an older
    release says only True: taken as long ago, so it reserves again)."""
    if isinstance(value, bool):
        return 0.0 if value else None
    return float(value) if isinstance(value, int | float) else None
