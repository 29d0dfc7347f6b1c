"""The WAL one database wrote between two positions, from `pg_waldump` on the server's pg_wal.

`pg_current_wal_lsn()` is server-wide: on a shared server its difference counts every database's
writes. pg_waldump lists each record with its transaction and the relations it touches
(`rel tablespace/database/relfilenode`), so the records of one database are: those of every
transaction that touched one of its relations (its COMMIT record included), and those outside any
transaction (tx 0: page pruning, hint-bit full-page images) on its relations. Records outside any
transaction and relation (checkpoints, running-transaction snapshots) are the server's own.

Needs the pg_waldump of the server's major version and read access to its pg_wal (the bench runs
on the server's host, as root or postgres); without them the figures are left out. The bench holds
a temporary replication slot during a window so that the server keeps the window's WAL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

RECORD = re.compile(
    r"rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*(\d+), lsn: [^,]+, prev [^,]+, desc: (.*)"
)
REL = re.compile(r"rel \d+/(\d+)/\d+")
# WAL records start on 8-byte boundaries (MAXALIGN); page headers (24 bytes a page) are not counted.
ALIGN = 8


@dataclass
class WalShare:
    """One database's WAL in a window: bytes, of which full-page images, records, and commit
    records (transactions that wrote WAL and were made durable)."""

    bytes: int = 0
    fpi_bytes: int = 0
    records: int = 0
    commits: int = 0


def locate(conn: psycopg.Connection) -> tuple[str, Path] | None:
    """(pg_waldump binary, pg_wal folder) when both are usable from here, else None."""
    try:
        data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    except psycopg.Error:
        return None
    candidates = [f"/usr/lib/postgresql/{major}/bin/pg_waldump", shutil.which("pg_waldump")]
    binary = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    wal_dir = data_dir / "pg_wal"
    if binary is None or not os.access(wal_dir, os.R_OK | os.X_OK):
        return None
    return binary, wal_dir


@contextlib.contextmanager
def wal_kept(conn: psycopg.Connection, name: str) -> Iterator[None]:
    """The server keeps its WAL from now on until the block ends: a temporary physical replication
    slot of this session (dropped at the end, or with the session if the bench dies). Without it,
    a checkpoint (DROP DATABASE forces one) may recycle the segments before pg_waldump reads them."""
    conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", (name,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))


def database_oid(conn: psycopg.Connection, dbname: str) -> int:
    return conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (dbname,)).fetchone()[0]


def wal_of_database(where: tuple[str, Path], start: str, end: str, db_oid: int) -> WalShare | None:
    """The WAL of database `db_oid` between two LSNs; None when pg_waldump cannot read them (the
    segments already recycled)."""
    binary, wal_dir = where
    done = subprocess.run(
        [binary, "-p", str(wal_dir), "-s", start, "-e", end], capture_output=True, text=True
    )
    if done.returncode != 0 and not done.stdout:
        print(f"pg_waldump {start}..{end}: {done.stderr.strip()[-300:]}", flush=True)
        return None
    return attribute(done.stdout.splitlines(), db_oid)


def attribute(lines: list[str], db_oid: int) -> WalShare:
    """Sum the records of `db_oid` (see the module's docstring)."""
    records = []  # (rmgr, rec, tot, xid, database oids, commit)
    ours: set[int] = set()
    for line in lines:
        m = RECORD.match(line)
        if not m:
            continue
        rmgr, rec, tot, xid, desc = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5)
        dbs = {int(d) for d in REL.findall(desc)}
        if xid and db_oid in dbs:
            ours.add(xid)
        records.append((rec, tot, xid, dbs, rmgr == "Transaction" and desc.startswith("COMMIT")))
    share = WalShare()
    for rec, tot, xid, dbs, commit in records:
        if (xid and xid in ours) or (not xid and db_oid in dbs):
            share.bytes += -(-tot // ALIGN) * ALIGN
            share.fpi_bytes += tot - rec
            share.records += 1
            share.commits += commit
    return share
