"""``python -m ampkit`` (also what ``torchrun -m ampkit`` runs)."""

import sys

from .cli import main

sys.exit(main())
