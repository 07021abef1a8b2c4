"""Entry point: ``python -m conformance --runtime PATH [...]``."""
from __future__ import annotations

import sys

from conformance.runner import main

sys.exit(main())
