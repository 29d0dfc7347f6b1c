"""enqueue() under generated hostile values: every call ends in a job or an EnqueueError naming
the field, never a database error, and a refused call writes nothing."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers import EnqueueError, enqueue

# Text as hostile as Python strings get: NUL, lone surrogates, every plane, very long.
hostile_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x00", "\ud800", "a\udfffb", "x" * 3000, "١٢٣", "²", "'; DROP TABLE jobs; --"]
)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
anything = json_like | st.builds(object) | st.binary(max_size=8)
seconds = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.sampled_from([0, 1, 10**12, -1, math.inf, math.nan])
)


def _count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=anything,
    dedup_key=st.none() | hostile_text | st.integers(),
    delay=st.none() | seconds,
    queue=st.none() | st.sampled_from(["default", "nowhere", "", "\x00"]) | st.integers(),
    window=st.none() | seconds,
    eta=st.none() | st.datetimes(timezones=st.just(UTC)) | st.datetimes(),
    by=st.sampled_from(["app"]) | hostile_text | st.integers(),
)
def test_a_hostile_enqueue_makes_a_job_or_a_clear_refusal(
    conn: psycopg.Connection, key: Any, dedup_key: Any, delay: Any, queue: Any, window: Any, eta: Any, by: Any
) -> None:
    before = _count(conn)
    try:
        ref = enqueue(
            "remember",
            [key],
            dedup_key=dedup_key,
            dedup_window=window,
            delay=delay,
            eta=eta,
            queue=queue,
            enqueued_by=by,
        )
    except EnqueueError as exc:
        fields = {"args", "kwargs", "dedup_key", "dedup_window", "delay", "eta", "queue", "enqueued_by"}
        assert exc.field in fields, exc
        assert _count(conn) == before
    else:
        # A new job, or the job that holds the dedup key.
        assert _count(conn) == before + ref.created
        assert ref.created or dedup_key is not None
