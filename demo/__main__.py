"""`python -m demo ...` from the repository root: the demo's command line (demo/cli.py)."""

from demo.cli import main

raise SystemExit(main())
