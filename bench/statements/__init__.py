"""The hot-path statements benchmark (`python -m bench.statements`)."""
