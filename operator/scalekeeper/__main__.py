"""`python -m scalekeeper`: the `scalekeeper` command, for where the script is not on PATH."""

import sys

from .cli import main

sys.exit(main())
