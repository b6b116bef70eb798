"""``python -m tinycnn_xp``: the same command line as ``tinycnn-xp``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
