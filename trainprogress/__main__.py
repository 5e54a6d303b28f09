"""``python -m trainprogress``: the trainprogress command (plot, summary, watch)."""

import sys

from .reading.cli import main

sys.exit(main())
