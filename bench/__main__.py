"""``python -m bench [-k PATTERN] [--quick] [--list]``."""

from bench.runner import main

raise SystemExit(main())
