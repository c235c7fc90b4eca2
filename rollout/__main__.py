"""`python -m rollout <verb>` (rollout/cli.py)."""

import sys

from rollout.cli import main

sys.exit(main())
