"""`python -m bench.scale`: see the package's docstring."""

import sys

from bench.scale.run import main

sys.exit(main())
