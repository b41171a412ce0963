"""``python -m poisonlib``: the command line (:mod:`poisonlib.cli`)."""

import sys

from .cli import main

sys.exit(main())
