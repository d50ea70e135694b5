"""Which platform a request's path belongs to, among those ``--platform`` enables."""

from __future__ import annotations

from .bedrock import Bedrock
from .config import SimulatorConfig
from .http import Request
from .platform import PLATFORMS, PlatformRequest
from .vertex import Vertex

__all__ = ["Router"]


class Router:
    """Finds the platform a request's path belongs to, among those `--platform` enables."""

    def __init__(self, config: SimulatorConfig) -> None:
        platform = config.platform
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
        self.first_party = platform in ("anthropic", "all")
        self.bedrock = Bedrock(config) if platform in ("bedrock", "all") else None
        self.vertex = Vertex(config) if platform in ("vertex", "all") else None

    def match(self, req: Request) -> PlatformRequest | None:
        """The platform request for this path, or None when the first-party routes handle it."""
        path = req.path
        if self.bedrock is not None and path.startswith("/model/"):
            return self.bedrock.request(req)
        if self.vertex is not None and self.vertex.owns(path):
            return self.vertex.request(req)
        if self.first_party or path.startswith("/v1/simulator/"):
            return None
        # A single-platform simulator answers every other path as that platform's 404.
        front = self.bedrock or self.vertex
        assert front is not None
        return front.unknown(req)
