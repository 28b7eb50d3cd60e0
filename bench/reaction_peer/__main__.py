"""`python -m bench.reaction_peer`: see the package's docstring."""

import sys

from bench.reaction_peer.run import main

sys.exit(main())
