"""The flow-control benchmark (`python -m bench.flow`)."""
