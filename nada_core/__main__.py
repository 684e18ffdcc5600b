"""``python -m nada_core`` = the ``nada`` command."""

import sys

from .cli import main

sys.exit(main())
