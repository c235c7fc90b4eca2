import sys

from chi_scripts.cli import main

sys.exit(main())
