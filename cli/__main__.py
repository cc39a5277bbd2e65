"""``python -m presence_b2b.cli`` is the ``presence-b2b`` command."""

import sys

from .main import main

sys.exit(main())
