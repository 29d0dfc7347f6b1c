"""Formatting shared by the commands' tables and JSON (jobs/listing.py, which the job families'
commands use too)."""

from jobs.listing import Column, add_listing_flags, cut, dumps, human, json_default, show, table, when

__all__ = ["Column", "add_listing_flags", "cut", "dumps", "human", "json_default", "show", "table", "when"]
