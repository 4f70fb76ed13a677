"""``python -m benchmarks [--mode full|quick|smoke]``: the harness behind ``make bench``."""

import sys

from benchmarks.harness.run import main

sys.exit(main())
