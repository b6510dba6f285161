"""``python -m natsdemo COMMAND``: see :mod:`natsdemo.cli`."""

import sys

from natsdemo.cli import main

if __name__ == "__main__":
    sys.exit(main())
