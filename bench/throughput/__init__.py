"""Throughput of the ledger path against bare Dramatiq (`python -m bench.throughput`).

Nothing is imported here: the bare Dramatiq workers load `bench.throughput.bare_app` and must not
load anything of Skyport."""
