"""Shim so that ``python cli.py ...`` from a checkout equals ``stemqd ...``."""

import sys

from stemqd.cli import main

if __name__ == "__main__":
    sys.exit(main())
