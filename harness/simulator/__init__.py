"""Embedded Anthropic Messages API simulator: the harness's default load target and its tests' server.

Run it with `python -m harness.simulator --help`; start it from Python with
`harness.simulator.launcher.SimulatorProcess`. Stdlib only, and it never imports locust or gevent.
"""

from .launcher import SimulatorProcess

__all__ = ["SimulatorProcess"]
