"""``python -m client``: the same as the ``digits`` console script."""

from client.cli import main

raise SystemExit(main())
