"""``python -m aewatch``: the same command line as the ``aewatch`` script."""

from aewatch.cli import main

raise SystemExit(main())
