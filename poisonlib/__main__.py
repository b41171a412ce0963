"""``python -m poisonlib``: the command line (:mod:`poisonlib.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":  # a process pool's spawned workers import this module too
    sys.exit(main())
