"""``python -m mattekit`` is the ``mattekit`` command."""

import sys

from mattekit.cli import main

sys.exit(main())
