"""`python -m simulator` is `evcharging-sim`."""

import sys

from simulator.cli import main

sys.exit(main())
