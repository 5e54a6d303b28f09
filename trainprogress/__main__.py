"""``python -m trainprogress``: the trainprogress command (plot, summary, watch)."""

import sys

from .cli import main

sys.exit(main())
