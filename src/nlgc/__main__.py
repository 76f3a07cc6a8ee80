"""``python -m nlgc``: the same as the ``nlgc`` command."""

import sys

from nlgc.cli import main

sys.exit(main())
