"""`python -m demo_watch`: see the package's docstring."""

import sys

from demo_watch.cli import main

sys.exit(main())
