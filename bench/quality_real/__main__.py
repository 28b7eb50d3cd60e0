"""`python -m bench.quality_real`: see the package's docstring."""

import sys

from bench.quality_real.run import main

sys.exit(main())
