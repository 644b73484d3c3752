"""`python -m bootstrap`: the bot's entry point (no command means `run`)."""

from bootstrap.cli import main

raise SystemExit(main())
