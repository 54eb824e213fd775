import sys

from . import main

# The guard matters: worker processes started by "spawn" (macOS, Windows) import __main__.
if __name__ == "__main__":
    sys.exit(main())
