"""Alpha Skyport v2 business tables (filled in by the seed-schema migration work)."""
