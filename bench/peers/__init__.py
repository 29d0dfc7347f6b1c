"""Side by side: Skyport next to bare Dramatiq, procrastinate and pgqueuer (`python -m bench.peers`).

Nothing is imported here: the peers' workers load their modules of this package
(`bare_actors`, `procrastinate_app`, `pgqueuer_app`) and nothing of Skyport."""
