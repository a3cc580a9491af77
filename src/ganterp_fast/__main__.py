"""`python -m ganterp_fast` runs the command-line interface."""

from ganterp_fast.cli.main import main

raise SystemExit(main())
