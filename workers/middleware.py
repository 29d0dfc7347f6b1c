"""The ledger middleware: ties every Dramatiq message to its ledger row.

Before a message runs, its job moves queued -> running (a conditional UPDATE); a message whose
job is not queued (running elsewhere, finished, cancelled: a duplicate or a late redelivery) is
skipped. After it runs, the job becomes succeeded, retrying (with an eta) or dead. Starts and
successes of a process's threads are written in groups (workers/group_commit.py). In each worker
process it also runs the relay and the heartbeat threads.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
import traceback
from typing import Any

import dramatiq
import dramatiq.worker
import psycopg
from dramatiq.middleware import Middleware, SkipMessage
from psycopg_pool import PoolTimeout

import config
from db import pool
from db.transient import retry_transient
from workers import boot_gate, ledger, lifeline, observability, retry_policy
from workers.flow_gate import FlowGate
from workers.group_commit import GroupCommit
from workers.relay import Relay

logger = logging.getLogger("skyport.worker")

# How long a worker keeps retrying to record an outcome while PostgreSQL is away.
DEFAULT_RECORD_OUTCOME_FOR_S = 300.0
# Longest pause of an idle consumer between two polls of the broker while it cannot hear wake-ups
# (workers/wake.py), in milliseconds.
DEFAULT_IDLE_POLL_MS = 100
# Messages a consumer holds per worker thread (Dramatiq's default is 2), up to four times as many
# while it is busy with short jobs (workers/consumer.py, PREFETCH_GROWTH): each fetch is claimed in one
# statement, and a consumer fetches again once half of them are done, so this sets the size of
# those batches (docs/benchmarks.md, peers: batched end-to-end +13 % at 4 against 2). A claimed
# job waiting for a thread shows as running; `dramatiq_queue_prefetch` in the environment
# overrides it (per consumer, not per thread, and fixed), e.g. for long jobs.
DEFAULT_PREFETCH_PER_THREAD = 4
# How long a success waits for others to share its statement and commit. Nobody waits for it
# (the job ran; a crash before the commit runs it again), so jobs that arrive one at a time are
# recorded a few per statement instead of one (docs/benchmarks.md, "Where the time goes").
DEFAULT_SUCCESS_LINGER_S = 0.005
# Seconds a stale claim's check may wait for a connection before the job runs unchecked.
CLAIM_CHECK_TIMEOUT_S = 2.0


class LedgerMiddleware(Middleware):
    @property
    def actor_options(self) -> set[str]:
        return {
            "max_retries",
            "min_backoff_s",
            "max_backoff_s",
            "retry_when",
            "throws",
            # flow control (workers/flow.py)
            "concurrency",
            "concurrency_key",
            "rate_limit",
        }

    def __init__(self) -> None:
        self.worker_id: str | None = None
        self._attempts: dict[str, ledger.StartedAttempt] = {}
        # Jobs claimed by a consumer at fetch time (workers/consumer.py), by message id, with the
        # time.monotonic() of the claim, until a worker thread takes the message.
        self._claimed: dict[str, tuple[ledger.StartedAttempt, float]] = {}
        # Message ids of claimed jobs cancelled before a thread took them: dropped by that thread.
        self._cancelled: set[str] = set()
        self._relay: Relay | None = None
        # Pauses and limits: which fetched jobs they hold back (workers/flow_gate.py).
        self._flow = FlowGate()
        self._heartbeat: lifeline.Heartbeat | None = None
        self._starts = GroupCommit("skyport-ledger-starts", self._write_starts)
        self._successes = GroupCommit(
            "skyport-ledger-successes", self._write_successes, linger_s=DEFAULT_SUCCESS_LINGER_S
        )
        # Consumers start before after_worker_boot: jobs wait until the worker has an id, a
        # heartbeat row and its writers, and Dramatiq's main process knows it booted (boot_gate).
        self._booted = threading.Event()
        self._ready = False
        # A claim older than this is checked before its job begins: the process may have been
        # frozen (SIGSTOP, a suspended VM) past the dead-after time, and the lifeline given the job
        # to another worker meanwhile. Set from the configuration at boot.
        self._recheck_claims_after_s = math.inf

    # ---- worker process lifecycle -------------------------------------------------------------

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # An idle consumer that cannot hear wake-ups (workers/wake.py) polls the broker at most
        # this far apart (Dramatiq's default is 1 s); the worker threads wait this long for work.
        worker.worker_timeout = DEFAULT_IDLE_POLL_MS
        if not dramatiq.worker.QUEUE_PREFETCH:  # Dramatiq's own setting (dramatiq_queue_prefetch) wins
            worker.queue_prefetch = DEFAULT_PREFETCH_PER_THREAD * worker.worker_threads
        elif hasattr(broker, "prefetch_growth"):  # the claiming consumer: keep it as set
            broker.prefetch_growth = 1

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        try:
            self._boot(broker, worker)
        except Exception:
            # Dramatiq would log this and go on consuming, without a ledger: stop instead.
            logger.critical("worker cannot start its ledger services", exc_info=True)
            os._exit(3)

    def _boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        cfg = config.get()
        self._recheck_claims_after_s = cfg.worker.dead_after_s / 2
        self.worker_id = lifeline.new_worker_id()
        queues = sorted(worker.consumer_whitelist) if worker.consumer_whitelist else None
        with pool.connection() as conn:
            lifeline.heartbeat(conn, self.worker_id, queues)
        self._heartbeat = lifeline.Heartbeat(self.worker_id, queues, cfg)
        self._heartbeat.start()
        self._starts.start()
        self._successes.start()
        self._flow.start(broker, cfg)
        # LISTEN needs a session connection; behind a transaction pooler without one, it polls.
        session_url = cfg.database.session_url
        self._relay = Relay(
            session_url or cfg.database.url,
            broker,
            batch=cfg.worker.relay_batch,
            sweep_s=cfg.worker.relay_sweep_s,
            listen=session_url is not None,
            on_cancel=self._on_cancel,
            claimed_jobs=self._claimed_jobs,
            flow_pass=self._flow.release_slots,
        )
        self._flow.wake_in = self._relay.wake_in
        self._relay.start()
        self._booted.set()
        logger.info("worker %s started (queues: %s)", self.worker_id, ", ".join(queues or ["all"]))

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._relay is not None:
            self._relay.stop()
        self._flow.stop()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._starts.stop()
        self._successes.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.worker_id is None:
            return
        try:
            unstarted = self._release_claimed(list(self._claimed))  # in the work queue at shutdown
            with pool.connection() as conn:
                given_back = ledger.give_back_running(conn, self.worker_id)
                if given_back:
                    ledger.wake_relays(conn)
                lifeline.forget_worker(conn, self.worker_id)
            if unstarted:
                logger.info("%d fetched jobs that no thread started are queued again", unstarted)
            for job_id, state in given_back:
                logger.warning("job %s: not finished within the shutdown grace period; now %s", job_id, state)
        except Exception:
            logger.exception("could not hand back running jobs; the lifeline will recover them")
        logger.info("worker %s stopped", self.worker_id)

    # ---- messages -----------------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        if not self._ready:
            self._booted.wait()
            boot_gate.wait_until_reported()
            self._ready = True
        job_id = message.options.get("job_id")
        if job_id is None:
            logger.error(
                "message %s for %s has no ledger job (sent with actor.send?); enqueue jobs with "
                "workers.enqueue. Skipped.",
                message.message_id,
                message.actor_name,
            )
            raise SkipMessage("no ledger job")
        claimed = self._claimed.pop(message.message_id, None)
        if message.message_id in self._cancelled:
            self._cancelled.discard(message.message_id)
            logger.info("job %s: cancelled before it began; skipped", job_id)
            raise SkipMessage("job cancelled")
        if claimed is not None and self._flow.paused(message):
            self._release_claimed([message.message_id], paused=True, claimed=[claimed[0]])
            logger.info("job %s: its queue or actor was paused before it began; waits", job_id)
            raise SkipMessage("paused")
        if claimed is not None:
            started, claimed_at = claimed
            waited_s = time.monotonic() - claimed_at
            if waited_s > self._recheck_claims_after_s and not self._claim_held(started):
                logger.warning(
                    "job %s: claimed %.0fs ago and taken back since (lifeline); skipped", job_id, waited_s
                )
                raise SkipMessage("claim taken back")
            started = dataclasses.replace(started, waited_s=waited_s)
        elif self._flow.controlled(message):  # RabbitMQ, under flow control: claimed on its own
            started = self._flow.claim([message], self.worker_id or "unknown").get(message.message_id)
            if started is None:
                raise SkipMessage("held back by flow control")
        else:  # not claimed at fetch time (RabbitMQ): claim it now
            started = self._starts.submit((job_id, message.message_id))
        if started is None:
            logger.info("job %s: not queued any more (duplicate or late message); skipped", job_id)
            raise SkipMessage("job not queued")
        self._attempts[message.message_id] = started
        observability.set_job_context(job_id, message.actor_name, message.queue_name, started.attempt)
        logger.debug("job %s: %s attempt %d started", job_id, message.actor_name, started.attempt)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._cancelled.discard(message.message_id)  # cancelled as its thread began it: it ran
        started = self._attempts.pop(message.message_id, None)
        if started is None:
            return
        try:
            self._record_outcome(broker, message, started, exception)
        finally:
            observability.clear_job_context()

    def _record_outcome(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        started: ledger.StartedAttempt,
        exception: BaseException | None,
    ) -> None:
        worker_id = self.worker_id or "unknown"
        if exception is None:
            # Not waited for: the job ran, and its outcome is written with the next group. Until
            # then the job is running in the ledger; a crash now makes it run again (at least once).
            self._successes.submit_nowait(started)
            return
        try:
            options = broker.get_actor(message.actor_name).options
        except dramatiq.ActorNotFound:
            options = {}
        delay_s = retry_policy.retry_delay_s(options, started.attempt, started.max_attempts, exception)
        error = f"{type(exception).__name__}: {exception}"
        _record(
            ledger.job_fail,
            started,
            worker_id,
            error=error,
            traceback="".join(traceback.format_exception(exception)),
            retry_in_s=delay_s,
        )
        if started.limited and self._flow.slots_awaited():  # its slot is free: a waiting job goes
            _wake_relays()
        if delay_s is None:
            logger.error(
                "job %s: %s attempt %d failed, dead: %s",
                started.job_id,
                message.actor_name,
                started.attempt,
                error,
            )
        else:
            logger.warning(
                "job %s: %s attempt %d failed, retry in %.1fs: %s",
                started.job_id,
                message.actor_name,
                started.attempt,
                delay_s,
                error,
            )

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self._attempts.pop(message.message_id, None)

    # ---- claims at fetch time (on the consumer threads, workers/consumer.py) --------------------

    def _claim_held(self, started: ledger.StartedAttempt) -> bool:
        """Whether the ledger still gives this worker the job; when it cannot say, the job runs
        (as it would have: delivery is at least once)."""
        try:
            with pool.connection(CLAIM_CHECK_TIMEOUT_S) as conn:
                return ledger.claim_held(conn, started, self.worker_id or "")
        except (psycopg.Error, PoolTimeout):
            logger.warning("job %s: could not check its claim; running it", started.job_id, exc_info=True)
            return True

    def claim_messages(self, messages: list[dramatiq.MessageProxy]) -> list[dramatiq.MessageProxy]:
        """Claim the jobs of fetched messages in one statement (those under flow control in a
        transaction of their own, workers/flow_claim.py); returns the messages to run."""
        self._booted.wait()
        ledger_jobs = [m for m in messages if m.options.get("job_id") is not None]
        controlled = [m for m in ledger_jobs if self._flow.controlled(m)]
        jobs = [(m.options["job_id"], m.message_id) for m in ledger_jobs if m not in controlled]
        results = self._write_starts(jobs) if jobs else []
        started = dict(zip((message_id for _, message_id in jobs), results, strict=True))
        if controlled:
            held = self._flow.claim(controlled, self.worker_id or "unknown")
            started |= {m.message_id: held.get(m.message_id) for m in controlled}
        claimed_at = time.monotonic()
        runnable = []
        for message in messages:
            if message.message_id not in started:  # no ledger job: before_process_message says so
                runnable.append(message)
            elif (attempt := started[message.message_id]) is not None:
                self._claimed[message.message_id] = (attempt, claimed_at)
                runnable.append(message)
            else:
                job_id = message.options["job_id"]
                logger.info("job %s: not queued any more (duplicate or late message); skipped", job_id)
        return runnable

    def _on_cancel(self, job_id: int) -> None:
        """A job was cancelled (on the relay's thread): if this process claimed it and no thread
        has begun it, the thread that takes its message drops it."""
        for message_id, (attempt, _) in list(self._claimed.items()):
            if attempt.job_id == job_id:
                self._cancelled.add(message_id)

    def _claimed_jobs(self) -> list[int]:
        """The jobs this process claimed and no thread has begun (for the relay's poll)."""
        return [attempt.job_id for attempt, _ in list(self._claimed.values())]

    def release_messages(self, messages: list[dramatiq.MessageProxy]) -> None:
        """Claimed messages that will not run in this process: their jobs are queued again,
        without spending the attempt their claim counted."""
        self._release_claimed([m.message_id for m in messages])

    def _release_claimed(
        self,
        message_ids: list[str],
        *,
        paused: bool = False,
        claimed: list[ledger.StartedAttempt] | None = None,
    ) -> int:
        """Queue the claimed jobs of these messages again (with `paused`, those of a paused queue or
        actor wait off the broker); forgets them once done (not when the ledger cannot be reached:
        then they stay claimed, for a later try or the lifeline)."""
        attempts = claimed or [c[0] for m in message_ids if (c := self._claimed.get(m)) is not None]
        released = []
        if attempts and self.worker_id is not None:
            with pool.connection() as conn:
                released = ledger.job_release_unstarted(conn, self.worker_id, attempts, paused=paused)
                if released:
                    ledger.wake_relays(conn)
        for message_id in message_ids:
            self._claimed.pop(message_id, None)
            self._cancelled.discard(message_id)
        return len(released)

    # ---- group-committed writes (on the groups' threads) ----------------------------------------

    @retry_transient(max_delay_s=60.0)
    def _write_starts(self, messages: list[tuple[int, str]]) -> list[ledger.StartedAttempt | None]:
        with pool.connection() as conn:
            started = ledger.job_start_many(conn, self.worker_id or "unknown", messages)
        return [started.get(message_id) for _, message_id in messages]

    @retry_transient(max_delay_s=DEFAULT_RECORD_OUTCOME_FOR_S)
    def _write_successes(self, attempts: list[ledger.StartedAttempt]) -> list[bool]:
        with pool.connection() as conn:
            recorded = ledger.job_succeed_many(conn, self.worker_id or "unknown", attempts)
            if any(a.limited for a in attempts) and self._flow.slots_awaited():  # a waiting job goes
                ledger.wake_relays(conn)
        accepted = [(a.job_id, a.attempt) in recorded for a in attempts]
        for attempt, ok in zip(attempts, accepted, strict=True):
            if not ok:
                _log_ignored(attempt)
        return accepted


@retry_transient(max_delay_s=DEFAULT_RECORD_OUTCOME_FOR_S)
def _record(write: Any, started: ledger.StartedAttempt, worker_id: str, **kwargs: Any) -> None:
    with pool.connection() as conn:
        if not write(conn, started, worker_id, **kwargs):
            _log_ignored(started)


@retry_transient(max_delay_s=DEFAULT_RECORD_OUTCOME_FOR_S)
def _wake_relays() -> None:
    with pool.connection() as conn:
        ledger.wake_relays(conn)


def _log_ignored(started: ledger.StartedAttempt) -> None:
    logger.warning(
        "job %s: outcome of attempt %d ignored (cancelled or recovered meanwhile)",
        started.job_id,
        started.attempt,
    )
