"""`python -m proxy` is `sprout-proxy`."""

from proxy.cli import main

raise SystemExit(main())
