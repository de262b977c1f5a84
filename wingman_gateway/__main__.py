"""``python -m wingman_gateway`` is the ``wingman`` command."""

import sys

from wingman_gateway.cli import main

sys.exit(main())
