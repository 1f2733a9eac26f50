"""``python -m beaker_core``: the ``beaker-core`` command."""
from .cli import main

raise SystemExit(main())
