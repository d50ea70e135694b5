"""Public name of multi-turn conversations (``from harness.conversation import ConversationUser``).

See :mod:`harness.runtime.conversation`. Importing it wires the harness into Locust, as
``from harness import AnthropicUser`` does.
"""

from __future__ import annotations

import harness.plugin  # noqa: F401  (a locustfile that imports only this still gets the harness's options)
from harness.runtime.conversation import Conversation, ConversationUser, ThinkTime

__all__ = ["Conversation", "ConversationUser", "ThinkTime"]
