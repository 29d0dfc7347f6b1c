"""Reading and checking one variable at a time, for `config.load` (which hands it the environment)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

# A rate: "10/s", "100/m", "5/2s", "1000/h", "20/0.5s" (count / [scale] unit).
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_UNIT_S = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_UNIT_S |= {"d": 86400, "day": 86400}
# Bounds of a rate's count and period (beyond them a rate's spacing is no number PostgreSQL or a
# float can hold).
MAX_RATE_COUNT = 1_000_000
MAX_RATE_PERIOD_S = 30 * 86400


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


def to_sqlalchemy_url(database_url: str) -> str:
    """The same database for SQLAlchemy/Alembic, through the psycopg 3 driver."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else database_url


def rate_parts(text: str) -> tuple[int, float]:
    """ "10/s" -> (10, 1.0): at most that many per that many seconds; ValueError otherwise."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"must look like 10/s, 100/m or 5/2s, got {text!r:.40}")
    count, period_s = int(match[1]), float(match[2] or 1) * _UNIT_S[match[3]]
    if count < 1 or period_s <= 0:
        raise ValueError(f"needs a count and a period above zero, got {text!r:.40}")
    if count > MAX_RATE_COUNT or period_s > MAX_RATE_PERIOD_S:
        raise ValueError(f"allows at most {MAX_RATE_COUNT} per at most 30 days, got {text!r:.40}")
    return count, period_s


class Reader:
    """Typed reads from an environment mapping; remembers every name asked for (`names`)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.names: set[str] = set()

    def raw(self, name: str) -> str:
        self.names.add(name)
        return self._environ.get(name, "")

    def text(self, name: str) -> str:
        return self.raw(name).strip()

    def names_list(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.text(name).split(",") if part.strip())

    def prefixed(
        self, prefix: str, placeholder: str, *, exclude: Iterable[str] = (), raw: bool = False
    ) -> dict[str, str]:
        """Every `<prefix><name>` variable but the excluded ones, by its full name."""
        self.names.add(prefix + placeholder)
        skip = set(exclude)
        return {
            name: value if raw else value.strip()
            for name, value in self._environ.items()
            if name.startswith(prefix) and name not in skip
        }

    def url(self, names: str | tuple[str, ...], default: str, schemes: tuple[str, ...]) -> str:
        """The first of `names` that is set (later ones are older names), else the default."""
        names = (names,) if isinstance(names, str) else names
        name, value = next(((n, v) for n in names if (v := self.text(n))), (names[0], default))
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"{name} is not a valid URL ({exc}): {value!r}") from None
        if parts.scheme not in schemes:
            raise ConfigError(
                f"{name} must start with one of {', '.join(s + '://' for s in schemes)}: {value!r}"
            )
        if parts.scheme != "unix" and not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"{name} has no host: {value!r}")
        return value

    def optional_http_url(self, name: str) -> str | None:
        return self.url(name, "", ("http", "https")) if self.text(name) else None

    def number(self, name: str, default: float, *, minimum: float = 0) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
        return value

    def int(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.number(name, default, minimum=minimum)
        if value != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(value)

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name).lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be 1/0 (true/false, on/off), got {raw!r}")

    def rate(self, name: str) -> tuple[int, float] | None:
        """A rate such as 10/s (count, period in seconds); None when unset."""
        raw = self.text(name)
        if not raw:
            return None
        try:
            return rate_parts(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} {exc}") from None

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name).lower() or default
        if value not in allowed:
            raise ConfigError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
        return value
