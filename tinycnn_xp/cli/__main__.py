"""``python -m tinycnn_xp.cli``: the same command line as ``tinycnn-xp``."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
