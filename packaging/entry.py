"""PyInstaller entry point: the same `main` the console script runs."""

import sys

from docker_credential_icr.cli import main

sys.exit(main())
