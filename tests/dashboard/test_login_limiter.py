"""The login limiter: failures counted per account and per address in PostgreSQL (every web process
sees the same counts), exponential back-off with 429 + Retry-After, no reset by another account's
login, no parallel guesses slipping past the count."""

from __future__ import annotations

import threading

import psycopg
import pytest

from dashboard import limiter
from tests.dashboard.conftest import csrf_of
from tests.dashboard.support import api_login, try_login, use_cheap_hashes, web_process

WRONG = "not-the-password"


@pytest.fixture
def users(dashboard_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ann (admin) and bob (readonly), with cheap hashes."""
    use_cheap_hashes(monkeypatch)


def _age_failures(conn: psycopg.Connection, seconds: float) -> None:
    """Time passes for the limiter: every recorded failure moves `seconds` into the past."""
    conn.execute(
        "UPDATE console_login_failures SET attempted_at = attempted_at - make_interval(secs => %s)",
        (seconds,),
    )


def test_an_account_is_blocked_from_every_address_with_retry_after(users: None) -> None:
    with web_process("10.0.0.1") as first, web_process("10.0.0.2") as second:
        for _ in range(limiter.ACCOUNT_FREE_FAILURES):
            assert try_login(first, "ann", WRONG) == 401
        blocked = second.post("/api/login", json={"username": "ann", "password": "ann-secret-1"})
        assert blocked.status_code == 429
        assert blocked.json()["error"].startswith("too many failed logins for this account: try again in")
        retry_after = int(blocked.headers["retry-after"])
        assert 1 <= retry_after <= limiter.BACKOFF_BASE_S and blocked.json()["retry_after_s"] == retry_after
        # The login page says the same, with the header.
        token = csrf_of(second.get("/login").text)
        page = second.post("/login", data={"username": "ann", "password": "x", "csrf_token": token})
        assert page.status_code == 429 and "retry-after" in page.headers
        assert "too many failed logins for this account" in page.text
        # Another account from the same addresses is not blocked.
        api_login(second, "bob")


def test_an_address_is_blocked_for_every_account(users: None) -> None:
    with web_process("10.0.0.7") as attacker, web_process("10.0.0.8") as elsewhere:
        for i in range(limiter.ADDRESS_FREE_FAILURES):
            assert try_login(attacker, f"guess-{i}", WRONG) == 401  # unknown names count too
        blocked = attacker.post("/api/login", json={"username": "bob", "password": "bob-secret-2"})
        assert blocked.status_code == 429 and "from this address" in blocked.json()["error"]
        api_login(elsewhere, "bob")


def test_another_accounts_login_does_not_reset_the_address(users: None) -> None:
    with web_process("10.0.0.9") as client:
        for i in range(limiter.ADDRESS_FREE_FAILURES - 1):
            assert try_login(client, f"victim-{i}", WRONG) == 401
        api_login(client, "ann")  # the attacker's own account logs in: the address count stays
        assert try_login(client, "victim-last", WRONG) == 401
        assert try_login(client, "victim-next", WRONG) == 429


def test_an_accounts_own_login_clears_its_failures(users: None) -> None:
    with web_process("10.0.1.1") as client:
        for _ in range(limiter.ACCOUNT_FREE_FAILURES - 1):
            assert try_login(client, "ann", WRONG) == 401
        api_login(client, "ann")
        for _ in range(limiter.ACCOUNT_FREE_FAILURES - 1):
            assert try_login(client, "ann", WRONG) == 401
        api_login(client, "ann")


def test_the_back_off_doubles_with_each_further_failure(users: None, conn) -> None:
    with web_process("10.0.2.1") as client:
        for _ in range(limiter.ACCOUNT_FREE_FAILURES):
            assert try_login(client, "ann", WRONG) == 401
        waits = []
        for _ in range(3):
            blocked = client.post("/api/login", json={"username": "ann", "password": WRONG})
            assert blocked.status_code == 429
            waits.append(int(blocked.headers["retry-after"]))
            _age_failures(conn, waits[-1] + 1)  # wait it out...
            assert try_login(client, "ann", WRONG) == 401  # ...and fail once more
        assert waits[0] <= limiter.BACKOFF_BASE_S
        assert waits[1] > limiter.BACKOFF_BASE_S and waits[2] > 2 * limiter.BACKOFF_BASE_S
        # Failures older than FORGET_AFTER_S no longer count.
        _age_failures(conn, limiter.FORGET_AFTER_S + 1)
        api_login(client, "ann")


def test_backoff_is_capped() -> None:
    free = limiter.ACCOUNT_FREE_FAILURES
    assert limiter.backoff_s(free - 1, free) == 0
    assert limiter.backoff_s(free, free) == limiter.BACKOFF_BASE_S
    assert limiter.backoff_s(free + 1, free) == 2 * limiter.BACKOFF_BASE_S
    assert limiter.backoff_s(free + 10_000, free) == limiter.BACKOFF_MAX_S


def test_parallel_guesses_cannot_slip_past_the_count(database_url: str) -> None:
    """Attempts are counted before their passwords are checked, under a lock per key: of many
    attempts at once, exactly the free ones get through, whichever process they reach."""
    outcomes: list[object] = []
    barrier = threading.Barrier(12)

    def attempt() -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            barrier.wait()
            outcomes.append(limiter.begin(c, "ann", "10.9.9.9"))

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    passed = [o for o in outcomes if isinstance(o, limiter.Attempt)]
    assert len(passed) == limiter.ACCOUNT_FREE_FAILURES
    assert all(isinstance(o, limiter.Blocked) and o.scope == "account" for o in outcomes if o not in passed)


@pytest.mark.parametrize("seconds, text", [(1, "1 s"), (119, "119 s"), (900, "15 min")])
def test_the_message_says_how_long(seconds: int, text: str) -> None:
    assert limiter.Blocked(seconds, "address").message.endswith(f"from this address: try again in {text}")
