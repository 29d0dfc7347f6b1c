"""The quotes family: quotes past `valid_until` expire (docs/families/quotes.md)."""

from __future__ import annotations

from jobs.family import Family, Periodic
from jobs.quotes import actors, cli

FAMILY = Family(
    name="quotes",
    actors=(actors,),
    commands=cli.add_commands,
    schedule=(Periodic("quotes_expire", "expire_quotes", "every 1m", grace_s=60),),
)
