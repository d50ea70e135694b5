"""The LLM tab of Locust's web UI, ``GET /llm/stats`` and the run's files as downloads.

Everything goes through Locust's supported extension points, so the tab is part of
Locust's own page (same theme, dark and light, refreshed with the rest of the UI):

* ``web_ui.template_args["extendedTabs"]`` / ``["extendedTables"]`` add the "LLM" tab and
  its table, whose rows ride on Locust's ``/stats/requests`` poll as ``extended_stats``
  (the pattern of Locust's ``examples/extend_web_ui.py``);
* ``["extendedCsvFiles"]`` adds the downloads to Locust's "Download Data" tab;
* Flask routes on ``web_ui.app`` serve ``/llm/stats``, the downloads and ``/llm/tab.js``,
  a small script the page loads that draws the rest of the tab (percentiles over the run
  and the last 30 s, errors, rate-limit headroom, charts) under Locust's table, styled with
  the classes of Locust's own elements so it follows the theme.

The harness's options are Locust custom arguments, so Locust shows them in the start form;
a start from the form is checked here first, so a bad value is refused with one message.
"""

from __future__ import annotations

from typing import Any

from locust import events
from locust.env import Environment

from harness import live
from harness.webui.routes import register

__all__ = ["install"]


def install(environment: Environment) -> None:
    """Add the LLM tab and routes to ``environment.web_ui`` (if there is one)."""
    stats = live.install(environment)
    if environment.web_ui is not None and stats is not None:
        register(environment.web_ui, stats)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    install(environment)
