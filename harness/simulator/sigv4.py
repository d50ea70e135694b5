"""Verify an AWS Signature Version 4 `Authorization` header, as Bedrock does, with hmac and hashlib.

The simulator recomputes the signature of each Bedrock request from the configured test credentials and
refuses a missing, malformed or wrong one, so a signing bug in a client fails a test instead of passing
unnoticed. The canonical request is built as AWS specifies it (and botocore's SigV4Auth writes it): the
path percent-encoded once more over what was on the wire, the query pairs sorted, the signed headers
lower-cased with their values' whitespace collapsed, and the SHA-256 of the body (or the
x-amz-content-sha256 header). Any region is accepted; it is read from the credential scope.

The default credentials are fixed, public and fake, so a harness that starts the simulator and signs
with them agrees with it without configuration; they open nothing but this simulator.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_SECRET_ACCESS_KEY",
    "SignatureRejected",
    "verify",
]

DEFAULT_ACCESS_KEY_ID = "AKIAHARNESSSIMULATOR"
DEFAULT_SECRET_ACCESS_KEY = "simulator/secret/for/loopback/tests/only"

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_SKEW_S = 300.0  # AWS refuses a signature more than 5 minutes from its clock

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class SignatureRejected:
    """Why a request's signature was refused: the AWS error type (x-amzn-ErrorType) and its message."""

    error_type: str
    message: str
    status: int = 403


def verify(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    service: str = "bedrock",
    now: float | None = None,
) -> str | SignatureRejected:
    """The access key id of a correctly signed request, or why it is refused.

    ``path`` and ``query`` are as they were on the wire (still percent-encoded); ``headers`` has lower-case
    names; ``credentials`` maps access key ids to their secret keys.
    """
    auth = headers.get("authorization")
    if not auth:
        return SignatureRejected("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.match(auth.strip())
    if match is None:
        return SignatureRejected(
            "IncompleteSignatureException",
            f"Authorization header requires {ALGORITHM} with 'Credential', 'SignedHeaders' and 'Signature'.",
        )
    scope = match["credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return SignatureRejected(
            "IncompleteSignatureException", "Credential must have the form KEY/DATE/REGION/SERVICE/aws4_request."
        )
    access_key, date, region, scope_service, _ = scope
    secret = credentials.get(access_key)
    if secret is None:
        return SignatureRejected(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if scope_service != service:
        return SignatureRejected(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'."
        )
    amz_date = headers.get("x-amz-date", "")
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return SignatureRejected("InvalidSignatureException", "'Host' and 'X-Amz-Date' must be signed headers.")
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, _AMZ_DATE))
    except ValueError:
        return SignatureRejected("IncompleteSignatureException", "X-Amz-Date must have the form YYYYMMDDTHHMMSSZ.")
    if amz_date[:8] != date:
        return SignatureRejected("InvalidSignatureException", "Credential should be scoped to a valid date.")
    if abs((time.time() if now is None else now) - signed_at) > MAX_SKEW_S:
        return SignatureRejected("InvalidSignatureException", f"Signature expired: {amz_date} is not within 5 minutes.")
    body_hash = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed not in (body_hash, UNSIGNED_PAYLOAD):
        return SignatureRejected(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            400,
        )
    missing = [name for name in signed if name not in headers]
    if missing:
        return SignatureRejected("InvalidSignatureException", MISMATCH)
    canonical = "\n".join(
        [
            method.upper(),
            quote(_remove_dot_segments(path), safe="/~"),
            _canonical_query(query),
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed),
            ";".join(signed),
            claimed or body_hash,
        ]
    )
    to_sign = "\n".join(
        [ALGORITHM, amz_date, f"{date}/{region}/{service}/aws4_request", hashlib.sha256(canonical.encode()).hexdigest()]
    )
    expected = hmac.new(_signing_key(secret, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        return SignatureRejected("InvalidSignatureException", MISMATCH)
    return access_key


@functools.lru_cache(maxsize=64)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    # Four HMACs that change once a day per region: derived once, as AWS's own signers cache them.
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{k}={v}" for k, v in pairs)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 section 5.2.4, and AWS's removal of empty segments, as botocore normalises before signing.
    if not path:
        return "/"
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last
