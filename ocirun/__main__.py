"""``python -m ocirun``: same as the ``ocirun`` launcher."""

import sys

from ocirun.cli import main

sys.exit(main(sys.argv[1:]))
