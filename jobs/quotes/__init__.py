"""Quotes: expiry of quoted quotes past `valid_until` (`expire_due_quotes`)."""

from jobs.quotes.expiry import ExpiryStats, expire_due_quotes

__all__ = ["ExpiryStats", "expire_due_quotes"]
