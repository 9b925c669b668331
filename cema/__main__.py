"""``python -m cema``: the same as the ``cema`` command."""

import sys

from cema.cli import main

sys.exit(main())
