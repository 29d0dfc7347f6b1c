"""The command line's output for people: tables with a header, columns sized to their content and
aligned, long values cut with an ellipsis, a hint when a listing was cut, `--json` on every
listing, `jobs show` without Python reprs, and no traceback when the reader closes the pipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

import tests.actors  # noqa: F401 - the `remember` actor
from jobs.listing import ELLIPSIS
from skyport.main import main as skyport
from tests.dashboard.conftest import make_dead
from tests.integration.business_rows import make_user
from workers import enqueue

REPO = Path(__file__).resolve().parents[2]
LISTINGS = (
    ["jobs", "list"],
    ["schedule", "list"],
    ["notifications", "dead"],
    ["partitions", "status"],
    ["matviews", "status"],
    ["queues", "list"],
    ["actors", "list"],
)


def _aligned(lines: list[str], header: str) -> None:
    """Every row's value under `header` starts where the header does (no shifting columns)."""
    at = lines[0].index(header)
    for line in lines[1:]:
        assert line[at - 2 : at] == "  " and line[at] != " ", (header, lines[0], line)


def test_jobs_list_is_a_table_that_says_when_there_is_more(
    conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    make_dead(conn, "long", error="carrier said: " + "x" * 300)
    ids = [enqueue("remember", [f"job-{i}"]).id for i in range(3)]
    assert skyport(["jobs", "list", "--limit", "2"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "ACTOR", "QUEUE", "TRIES", "ENQUEUED", "(UTC)", "ERROR"]
    assert [int(line.split()[0]) for line in lines[1:]] == [ids[2], ids[1]]
    for header in ("STATE", "ACTOR", "QUEUE", "ENQUEUED"):
        _aligned(lines, header)
    hint = f"showing 2 of 4; for more: --limit N, or --before {ids[1]} for the next page"
    assert err.strip() == hint
    assert skyport(["jobs", "list", "--limit", "2", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [job["id"] for job in json.loads(out)] == [ids[2], ids[1]] and err.strip() == hint

    assert skyport(["jobs", "list", "--before", str(ids[1])]) == 0
    out, err = capsys.readouterr()
    dead = out.splitlines()[2]
    assert "carrier said: xxx" in dead and dead.endswith(ELLIPSIS) and len(dead) < 200 and err == ""


def test_limit_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        skyport(["jobs", "list", "--limit", "0"])
    assert refused.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_jobs_show_prints_no_python_values(
    conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    job = enqueue("remember", ["shown"]).id
    assert skyport(["jobs", "show", str(job)]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "{'" not in out and "['" not in out
    assert 'args: ["shown"]' in out and "kwargs: -" in out and "attempts: 0 of" in out
    assert skyport(["jobs", "show", str(job), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["args"] == ["shown"]


def test_every_listing_takes_json_and_tables_have_a_header(
    conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.notifications import enqueue_notification

    for i in range(2):
        enqueue_notification(conn, make_user(conn), "shipment_update", "t", "m", f"dead-{i}", wake=False)
    conn.execute("UPDATE notification_queue SET status = 'dead', last_error = 'no SMS provider'")
    for listing in LISTINGS:
        code = skyport([*listing, "--json"])
        assert code in (0, 1), listing  # partitions status says 1 when a table is not covered
        assert isinstance(json.loads(capsys.readouterr().out), list), listing
    assert skyport(["notifications", "dead"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "TYPE", "CHANNELS"] and len(lines) == 3
    assert skyport(["schedule", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for header in ("TRIGGER", "ON", "NEXT", "LAST RUN", "LAST OUTCOME"):
        _aligned(lines, header)


def test_a_closed_pipe_ends_quietly(conn: psycopg.Connection, database_url: str) -> None:
    job = make_dead(conn, "piped", error="boom\n" * 50_000)  # a traceback longer than a pipe holds
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyport", "jobs", "show", str(job)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.read(100)
    proc.stdout.close()  # `| head`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_retry_and_cancel_are_audited_as_the_command_line_user(
    conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.family import command_user

    dead = make_dead(conn, "cli-retry")
    assert skyport(["enqueue", "remember", "--args", '["cli-cancel"]']) == 0
    queued = int(capsys.readouterr().out)
    by = conn.execute("SELECT enqueued_by FROM jobs WHERE id = %s", (queued,)).fetchone()[0]
    assert by == command_user()
    assert skyport(["jobs", "retry", str(dead)]) == 0
    assert skyport(["jobs", "cancel", str(queued)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"job {dead} queued again", f"job {queued} cancelled"]
    rows = conn.execute(
        "SELECT performed_by, reason, record_id FROM audit_log WHERE table_name = 'jobs' ORDER BY audit_id"
    ).fetchall()
    assert rows == [(command_user(), "retry", str(dead)), (command_user(), "cancel", str(queued))]
    # Nothing to do: said why, nothing audited.
    assert skyport(["jobs", "retry", str(dead)]) == 1
    assert skyport(["jobs", "cancel", str(queued)]) == 1
    assert skyport(["jobs", "retry", "999999"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"skyport: job {dead} is queued: only dead or cancelled jobs can be retried",
        f"skyport: job {queued} is cancelled: it has already finished",
        "skyport: no job 999999",
    ]
    assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 2
    # The job's own history names it, as the console's job page does.
    assert skyport(["jobs", "show", str(dead)]) == 0
    ops = capsys.readouterr().out.split("\nops actions (UTC):\n")[1].splitlines()
    assert len(ops) == 1 and ops[0].endswith(f"  retry by {command_user()} after attempt 1"), ops


def test_partitions_ensure_says_once_per_table_what_it_made(
    conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.partitions.registry import load_tables

    later = date.today() + timedelta(days=200)
    assert skyport(["partitions", "ensure", "--today", later.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    tables = [t.parent for t in load_tables()]
    assert sorted(line.split(":")[0] for line in lines) == sorted(tables)  # ensuring and retention in one
    made = f"audit_log_{later:%Y_%m}"
    audit = next(line for line in lines if line.startswith("audit_log: ok; created "))
    assert made in audit.split("; ")[1].removeprefix("created ").split(", "), audit
    assert "[" not in audit and "'" not in audit


def test_schedule_actions_are_audited_as_the_command_line_user(
    conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.family import command_user

    for verb in ("run", "disable", "enable"):
        assert skyport(["schedule", verb, "prune_jobs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("prune_jobs: job ")
    assert out[1:] == ["prune_jobs: disabled", "prune_jobs: enabled"]
    rows = conn.execute(
        "SELECT performed_by, reason FROM audit_log WHERE table_name = 'schedule' ORDER BY audit_id"
    ).fetchall()
    assert rows == [(command_user(), "run now"), (command_user(), "disable"), (command_user(), "enable")]


def test_matviews_status_gives_times_for_people(
    conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    assert skyport(["matviews", "refresh", "active_countries", "--now"]) == 0
    capsys.readouterr()
    assert skyport(["matviews", "status"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("active_countries "))
    assert re.search(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", line) and "+00:00" not in line, line
