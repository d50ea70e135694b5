"""Public name of scenario selection (``from harness.catalog import run_by_default``).

See :mod:`harness.runtime.catalog`. Importing it wires the harness into Locust, as
``from harness import AnthropicUser`` does.
"""

from __future__ import annotations

import harness.plugin  # noqa: F401  (a locustfile that imports only this still gets the harness's options)
from harness.runtime.catalog import describe, run_by_default, tags_of

__all__ = ["describe", "run_by_default", "tags_of"]
