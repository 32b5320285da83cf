"""Entry point: ``python -m study {trial,launch,report} ...`` (see study/cli.py)."""

import sys

from study.cli import main

sys.exit(main())
