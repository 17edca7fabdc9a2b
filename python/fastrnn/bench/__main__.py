"""``python -m fastrnn.bench``: see ``python -m fastrnn.bench --help``."""

from .cli import main

raise SystemExit(main())
