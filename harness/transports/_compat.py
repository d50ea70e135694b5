"""Import-order fixes between gevent's monkey-patching and the SDK's HTTP stack.

httpcore (under the SDK's httpx) imports ``trio`` when it is installed, and trio's
import fails under gevent, which removes ``select.epoll``. Locust patches before any
locustfile runs, so the harness imports httpcore once with the original ``epoll`` put
back for the duration of that import; nothing here uses trio afterwards.
"""

from __future__ import annotations

import importlib
import select
import sys

__all__ = ["import_http_stack"]


def import_http_stack() -> None:
    if "httpcore2" in sys.modules or hasattr(select, "epoll"):
        importlib.import_module("httpcore2")
        return
    from gevent import monkey

    original = monkey.get_original("select", "epoll")
    setattr(select, "epoll", original)  # noqa: B010  (mypy knows select.epoll as a type)
    try:
        importlib.import_module("httpcore2")
    finally:
        delattr(select, "epoll")
