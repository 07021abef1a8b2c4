"""``python -m ocirun``: same as the ``ocirun`` launcher (its fast path first)."""

import gc
import sys

gc.disable()  # as bin/ocirun does for the start-up (ops/run.py and events turn it back on)

from ocirun.quick import main as quick

status = quick(sys.argv[1:])
if status is None:
    from ocirun.cli import main
    status = main(sys.argv[1:])
sys.exit(status)
