"""`python -m skyport ...`: the same as the `skyport` command."""

import sys

from skyport.main import main

sys.exit(main())
