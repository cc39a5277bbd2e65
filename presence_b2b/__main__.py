"""``python -m presence_b2b`` is the ``presence-b2b`` command."""

import sys

from .cli import main

sys.exit(main())
