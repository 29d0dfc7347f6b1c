import dramatiq
import pytest

from workers.retry_policy import PermanentError, backoff_s, retry_delay_s


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 30])
def test_backoff_grows_exponentially_within_jitter_and_cap(attempt: int) -> None:
    ceiling = min(100.0, 1.0 * 2 ** (attempt - 1))
    values = [backoff_s(attempt, 1.0, 100.0) for _ in range(200)]
    assert all(ceiling / 2 <= v <= ceiling for v in values)
    assert len(set(values)) > 100  # jittered, not a constant


def test_retry_until_attempts_are_used_up() -> None:
    options = {"min_backoff_s": 1.0, "max_backoff_s": 2.0}
    assert retry_delay_s(options, 1, 3, RuntimeError()) is not None
    assert retry_delay_s(options, 2, 3, RuntimeError()) is not None
    assert retry_delay_s(options, 3, 3, RuntimeError()) is None


def test_permanent_and_expected_errors_are_never_retried() -> None:
    assert retry_delay_s({}, 1, 10, PermanentError("bad input")) is None
    assert retry_delay_s({"throws": (KeyError,)}, 1, 10, KeyError("x")) is None
    assert retry_delay_s({"throws": (KeyError,)}, 1, 10, ValueError("x")) is not None


def test_retry_when_decides() -> None:
    options = {"retry_when": lambda attempt, exc: isinstance(exc, TimeoutError)}
    assert retry_delay_s(options, 1, 10, TimeoutError()) is not None
    assert retry_delay_s(options, 1, 10, ValueError()) is None


def test_dramatiq_retry_carries_its_delay_in_milliseconds() -> None:
    assert retry_delay_s({}, 1, 10, dramatiq.Retry(delay=2500)) == 2.5
