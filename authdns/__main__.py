"""``python -m authdns`` runs the same command line as ``authdns``."""

import sys

from .cli import main

sys.exit(main())
