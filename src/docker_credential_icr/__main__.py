import sys

from docker_credential_icr.cli import main

sys.exit(main())
