"""Top-level locustfile: the default scenario, against the simulator unless told otherwise.

locust -f locustfile.py --headless -u 10 -r 10 -t 30s     # no key: the embedded simulator
locust -f locustfile.py                                   # web UI on http://localhost:8089
"""

from scenarios.chat import ShortChat

__all__ = ["ShortChat"]
