"""Public name of the request type and helpers (``from harness.request import user_message``).

See :mod:`harness.core.request`.
"""

from __future__ import annotations

from harness.core.request import MessageRequest, user_message

__all__ = ["MessageRequest", "user_message"]
