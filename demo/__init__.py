"""The demo a newcomer runs (`scripts/run`), and the tools around the product: demo actors, demo
data, private servers, the payment-gateway simulator and its HTTP client.

Not part of what `pip install` ships (pyproject.toml's packages.find leaves it out): run it from
the repository root, `python -m demo --help`. It may import the product; the product never
imports it.
"""
