"""Benchmarks, grouped by subject. How to run each, the current figures and what limits them:
docs/benchmarks.md. Run from the repository root (not part of what `pip install` ships).

  throughput/  the ledger path against bare Dramatiq               python -m bench.throughput
  peers/       next to bare Dramatiq, procrastinate and pgqueuer    python -m bench.peers
  soak/        mixed load, kill -9, consistency and RSS growth      python -m bench.soak
  families/    payments, notifications, quote expiry, maintenance   python -m bench.families.<name>
               and the dashboard's jobs list
  support/     shared: processes, CPU per role, scratch databases, timing, machine facts
"""
