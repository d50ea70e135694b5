"""One Messages API request, built once and sent by any transport.

Every transport sends :meth:`MessageRequest.body`, so the SDK path and a raw-HTTP path
cannot disagree about what was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MessageRequest", "user_message"]


def user_message(text: str) -> dict[str, Any]:
    """A single user turn with plain text content."""
    return {"role": "user", "content": text}


@dataclass(frozen=True)
class MessageRequest:
    """The parameters of ``POST /v1/messages``; ``extra`` carries any other API field."""

    model: str
    max_tokens: int
    messages: Sequence[Mapping[str, Any]]
    system: str | Sequence[Mapping[str, Any]] | None = None
    temperature: float | None = None
    stream: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body, with ``stream`` set; ``None`` fields are left out."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": list(self.messages),
        }
        if self.system is not None:
            body["system"] = self.system
        if self.temperature is not None:
            body["temperature"] = self.temperature
        body.update(self.extra)
        body["stream"] = self.stream
        return body
