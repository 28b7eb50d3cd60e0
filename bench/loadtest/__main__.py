import sys

from bench.loadtest.cli import main

sys.exit(main())
