"""``python -m authdns`` runs the same command line as ``authdns``."""

import sys

from authdns.cli.commands import main

sys.exit(main())
