"""``python -m nlgc``: the same as the ``nlgc`` command."""

import sys

from nlgc.cli import main

if __name__ == "__main__":  # not in the demo's spawned training processes
    sys.exit(main())
