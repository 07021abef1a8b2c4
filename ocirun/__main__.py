"""``python -m ocirun``: same as the ``ocirun`` launcher (its fast path first)."""

import sys

from ocirun.quick import main as quick

status = quick(sys.argv[1:])
if status is None:
    from ocirun.cli import main
    status = main(sys.argv[1:])
sys.exit(status)
