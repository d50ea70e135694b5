"""``python -m harness.study [-f LOCUSTFILE] A B [C ...] | --levers [KEYS]  --users N --calls N --report-dir DIR``."""

# Locust's gevent monkey-patching must come before anything imports ssl, threads or the SDK.
import locust  # noqa: F401  isort: skip

import sys

from harness.outputs.study_cli import main

if __name__ == "__main__":
    sys.exit(main())
