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

from harness.monitors.live import LiveStats
from harness.outputs.webui.routes import register
from harness.outputs.webui.sections import add_sections
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "install"]


def install(harness: Harness) -> None:
    """Add the LLM tab and routes to the run's web UI (if there is one); after the live figures."""
    web_ui = harness.environment.web_ui
    stats = harness.feature(LiveStats)
    if web_ui is not None and stats is not None:
        register(web_ui, stats)
        add_sections(harness, stats)


FEATURE = Feature("web ui tab", install)
