"""Entry point for `python -m kvpolicy_kvpress`."""

import sys

from .cli import main

sys.exit(main())
