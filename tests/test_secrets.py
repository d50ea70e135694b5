"""The API key never appears in output, files, logs, exception text or ``--help``; TLS is verified.

Every run here uses a marker key and greps everything it produced for it: a server that
echoes the key back in an error body, DEBUG logging, Locust's CSV/JSON/HTML reports,
a key pasted into ``--host``, and the exception classes themselves.
"""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from locust import constant

from harness import AnthropicUser, HarnessOptions
from harness.core.errors import CallError, ConfigError
from harness.core.redact import add_secret, redact
from harness.runtime.safety import RedactingFilter

from .conftest import ROOT, _start
from .locust_runs import run_local
from .test_cli import locust
from .tls_server import https_server

MARKER = "sk-ant-api03-MARKER-do-not-print-0123456789abcdef"

ECHO_LOCUSTFILE = """
from harness import AnthropicUser
import harness.transports.sdk  # the SDK's import (seconds on a busy machine) before the run clock starts

class EchoKey(AnthropicUser):
    model = "echo_key"
    max_tokens = 16
    prompt = "hi"

class Fine(AnthropicUser):
    model = "ok"
    max_tokens = 16
    prompt = "hi"
"""


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    proc, url = _start([str(ROOT / "tests" / "hostile_server.py")])
    yield url
    proc.terminate()
    proc.wait(timeout=5)


def assert_no_marker(*texts: str, files: Path | None = None) -> None:
    for text in texts:
        assert MARKER not in text
        assert MARKER[10:30] not in text  # nor a recognisable piece of it
    if files is not None:
        for path in files.rglob("*"):
            if path.is_file():
                assert MARKER not in path.read_text(errors="replace"), path


def test_a_server_echoing_the_key_with_debug_logging_and_every_report(hostile_url: str, tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text(ECHO_LOCUSTFILE)
    result = locust(
        "-f", str(tmp_path / "echo.py"), "--headless", "-u", "2", "-r", "2", "-t", "3s", "--stop-timeout", "5",
        "--host", hostile_url, "--loglevel", "DEBUG",
        "--report-dir", str(tmp_path / "out"), "--csv", str(tmp_path / "run"),
        "--json-file", str(tmp_path / "stats"), "--html", str(tmp_path / "report.html"),
        cwd=tmp_path, env={"ANTHROPIC_API_KEY": MARKER, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]  # the 401s are failures
    jsonl = (tmp_path / "out" / "requests.jsonl").read_text()
    assert '"outcome":"http_401"' in jsonl and "invalid x-api-key: ***" in jsonl  # the echo happened
    assert_no_marker(result.stdout, result.stderr, files=tmp_path)


def test_help_and_a_key_pasted_into_host(tmp_path: Path) -> None:
    env = {"ANTHROPIC_API_KEY": MARKER}
    result = locust("-f", str(ROOT / "locustfile.py"), "--help", env=env, timeout=60)
    assert result.returncode == 0 and "--host" in result.stdout
    assert_no_marker(result.stdout, result.stderr)

    result = locust(
        "-f", str(ROOT / "locustfile.py"), "--headless", "-u", "1", "-t", "1s", "--host", MARKER,
        env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--host '***' is not an http(s) URL" in result.stderr
    assert_no_marker(result.stdout, result.stderr)


def test_exception_text_never_carries_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", MARKER)
    errors = [ConfigError(f"bad value {MARKER}"), CallError("http_401", f"invalid x-api-key: {MARKER}")]
    for error in errors:
        assert_no_marker(str(error), repr(error), *map(str, error.args))


def test_log_records_are_redacted_with_their_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", MARKER)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_secrets.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key is %s", MARKER)
        try:
            raise RuntimeError(f"server said {MARKER}")
        except RuntimeError:
            logger.exception("a call failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "key is ***" in text and "RuntimeError: server said ***" in text
    assert_no_marker(text)


AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYMARKERKEY"
AWS_TOKEN = "IQoJb3JpZ2luX2VjEMARKER//////////wEaCXVzLWVhc3QtMSJH"
BEDROCK_TOKEN = "ABSKQmVkcm9ja0FQSUtleMARKER0123456789"
GOOGLE_TOKEN = "ya29.a0AfB_byMARKER-never-registered_0123456789"


def test_aws_and_google_secrets_are_redacted_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", BEDROCK_TOKEN)
    resolved = "a-secret-a-transport-resolved-from-a-profile-file"  # in no environment variable
    add_secret(resolved)
    every = (AWS_SECRET, AWS_TOKEN, BEDROCK_TOKEN, GOOGLE_TOKEN, resolved)
    text = " | ".join(every)
    assert redact(text) == " | ".join(["***"] * len(every))
    for error in (ConfigError(f"bad {text}"), CallError("http_403", f"denied for {text}")):
        assert not any(secret in str(error) or secret in repr(error) for secret in every)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_secrets.platforms")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("signed with %s", text)
        try:
            raise RuntimeError(f"refresh failed: Bearer {GOOGLE_TOKEN}")
        except RuntimeError:
            logger.exception("token refresh")
    finally:
        logger.removeHandler(handler)
    assert "RuntimeError: refresh failed: Bearer ***" in stream.getvalue()
    assert not any(secret in stream.getvalue() for secret in every)


# -- TLS: verified unless --insecure ---------------------------------------------------------


@pytest.fixture(scope="module")
def https_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The hostile server over HTTPS with a fresh self-signed certificate for 127.0.0.1."""
    with https_server("hostile_server.py", tmp_path_factory.mktemp("tls")) as url:
        yield url


class TLSUser(AnthropicUser):
    model = "ok"
    max_tokens = 16
    prompt = "hi"
    wait_time = constant(60)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("transport", ["sdk", "fast"])
def test_tls_is_verified_unless_insecure(https_url: str, transport: str) -> None:
    verified = run_local([TLSUser], https_url, seconds=1.0, options=HarnessOptions(transport=transport))
    assert [r.outcome for r in verified.records] == ["connection"]
    assert "CERTIFICATE_VERIFY_FAILED" in (verified.records[0].error_message or "")
    insecure = run_local([TLSUser], https_url, seconds=1.0, options=HarnessOptions(insecure=True, transport=transport))
    assert [r.outcome for r in insecure.records] == ["ok"]
    assert insecure.records[0].output_tokens == 3  # the control stream read to its end over TLS


def test_insecure_prints_a_warning(tmp_path: Path) -> None:
    result = locust(
        "-f", str(ROOT / "locustfile.py"), "--headless", "-u", "0", "-t", "1s", "--insecure", cwd=tmp_path, timeout=60
    )  # fmt: skip
    assert sum("TLS certificates are NOT verified" in line for line in result.stderr.splitlines()) == 1
