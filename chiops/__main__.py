import sys

from chiops.cli import main

sys.exit(main())
