"""The demo a newcomer runs (`scripts/run`): demo actors, demo data, private servers."""
