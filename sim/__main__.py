"""``python -m sim`` is the same as the ``dsim`` command."""

from sim.cli import main

raise SystemExit(main())
