"""The job families' and the console's benches, one module each (`python -m bench.families.<name>`):
payment callbacks end to end, notification dispatch, quote expiry, partition and materialized-view
maintenance, the dashboard's jobs list."""
