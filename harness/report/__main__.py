"""``python -m harness.report DIR`` and ``python -m harness.report compare DIR_A DIR_B ... [-o FILE]``."""

from __future__ import annotations

import sys

from harness.outputs.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
