"""Soak: minutes of mixed load on real processes, random kill -9 of workers, then a consistency
check (`python -m bench.soak`). The workers load `bench.soak.actors`."""
