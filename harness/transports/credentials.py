"""Platform credentials, resolved once per transport: AWS's for Bedrock, Google's for Vertex.

The chains are the SDK's own: botocore's (environment, ``AWS_PROFILE`` and the shared files,
SSO, web identity, container and instance roles) or a Bedrock bearer token
(``AWS_BEARER_TOKEN_BEDROCK``); google-auth's application-default credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, the metadata
server) or an access token. They are resolved when the transport is built, before any load,
so a missing credential stops the run at start with one line (a ConfigError), and every
secret they yield is registered with :func:`harness.core.redact.add_secret`.

botocore and google-auth are imported only here and only for their platform: a first-party
run never pays for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.core.errors import CallError, ConfigError
from harness.core.outcome import CONNECTION
from harness.core.redact import add_secret
from harness.transports.base import TransportConfig

__all__ = ["AwsAuth", "GoogleAuth"]

GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class AwsAuth:
    """Signs Bedrock requests with SigV4 (botocore's ``SigV4Auth``), or sends a bearer token."""

    def __init__(self, config: TransportConfig) -> None:
        self.region = config.region or "us-east-1"
        self.bearer: str | None = config.api_key or None
        self.credentials: Any = None
        self._token: str | None = None
        if self.bearer is not None:
            add_secret(self.bearer)
            return
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        self._sigv4, self._request = SigV4Auth, AWSRequest
        if config.aws_access_key and config.aws_secret_key:
            self.credentials = Credentials(config.aws_access_key, config.aws_secret_key)
        else:
            self.credentials = _aws_chain()
        frozen = self.credentials.get_frozen_credentials()
        add_secret(frozen.secret_key)
        add_secret(frozen.token)

    def headers(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` plus the authentication of a ``POST url`` with ``body``."""
        if self.bearer is not None:
            return {**headers, "Authorization": f"Bearer {self.bearer}"}
        request = self._request("POST", url, data=body, headers=dict(headers))
        signer = self._sigv4(self.credentials, "bedrock", self.region)
        try:
            signer.add_auth(request)  # refreshes expiring credentials (SSO, roles) as it signs
        except Exception as exc:  # botocore's refresh failures have no common base class
            raise CallError(CONNECTION, f"AWS credentials could not be refreshed: {type(exc).__name__}") from None
        token = request.headers.get("X-Amz-Security-Token")
        if token is not None and token != self._token:
            self._token = token
            add_secret(token)
            add_secret(self.credentials.get_frozen_credentials().secret_key)
        return dict(request.headers.items())


def _aws_chain() -> Any:
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        credentials = botocore.session.Session().get_credentials()
    except BotoCoreError as exc:
        raise ConfigError(f"AWS credentials could not be loaded: {exc}") from None
    if credentials is None:
        raise ConfigError(
            "no AWS credentials found for --platform bedrock: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY), run 'aws sso login', or set AWS_BEARER_TOKEN_BEDROCK"
        )
    return credentials


class GoogleAuth:
    """A bearer token for Vertex: a given access token, or application-default credentials kept fresh."""

    def __init__(self, config: TransportConfig) -> None:
        self.credentials: Any = None
        self.project = config.project
        self._token: str | None = config.api_key or None
        if self._token is not None:
            add_secret(self._token)
        else:
            import google.auth
            from google.auth.exceptions import GoogleAuthError

            try:
                self.credentials, project = google.auth.default(scopes=[GOOGLE_SCOPE])
            except GoogleAuthError as exc:
                raise ConfigError(
                    "no Google credentials for --platform vertex: run 'gcloud auth application-default login' "
                    f"or set GOOGLE_APPLICATION_CREDENTIALS ({type(exc).__name__})"
                ) from None
            self.project = self.project or project
            try:
                self._refresh()  # the first token now: a credential that cannot give one stops the run at start
            except CallError as exc:
                raise ConfigError(f"Google credentials could not give an access token ({exc.reason})") from None
        if not self.project:
            raise ConfigError("no Google Cloud project for --platform vertex: give --vertex-project or set "
                              "ANTHROPIC_VERTEX_PROJECT_ID")  # fmt: skip

    def token(self) -> str:
        """The current access token, refreshed first when it has expired (a blocking, cooperative call)."""
        credentials = self.credentials
        if credentials is not None and (credentials.expired or not credentials.token):
            self._refresh()
        if not self._token:
            raise CallError(CONNECTION, "Google credentials gave no access token")
        return self._token

    def _refresh(self) -> None:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import Request

        try:
            self.credentials.refresh(Request())
        except GoogleAuthError as exc:
            raise CallError(CONNECTION, f"Google access token refresh failed: {type(exc).__name__}") from None
        self._token = self.credentials.token
        add_secret(self._token)
