"""``--platform bedrock|vertex`` as a user runs it: the target, the credentials and the auto-started simulator.

The CLI runs are ``locust`` subprocesses on a machine with no AWS or Google configuration (an empty
home, metadata services off), which is what a fresh machine is; the pure parts (which target, which
credentials, which model id, which price) are checked in-process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import CallRecord, HarnessOptions
from harness.core.errors import ConfigError
from harness.core.outcome import Outcome
from harness.core.platforms import bedrock_request, is_platform_id, platform_model, vertex_request
from harness.core.prices import DEFAULT_PRICES, list_prices, price_for
from harness.runtime.retries import is_retryable
from harness.runtime.target import PlatformTarget, has_credentials, platform_of, resolve_target, transport_auth
from harness.simulator import SimulatorProcess
from harness.simulator.sigv4 import DEFAULT_ACCESS_KEY_ID

from .locust_runs import read_jsonl
from .test_cli import ROOT, locust

CLOUD_VARS = ("AWS_", "GOOGLE_", "CLOUDSDK_", "CLOUD_ML_", "GCE_")


def fresh_machine(home: Path) -> dict[str, str]:
    """The environment of a machine with no AWS or Google configuration, whatever this one has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLOUD_VARS)}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", NO_GCE_CHECK="true", CLOUDSDK_CONFIG=str(home))
    return env


@pytest.mark.parametrize(
    ("platform", "transport", "model", "request_id"),
    [
        ("bedrock", "sdk", "global.anthropic.claude-haiku-4-5-20251001-v1:0", "req_"),
        ("vertex", "fast", "claude-haiku-4-5@20251001", "msg_"),
    ],
)
def test_no_credentials_start_the_simulator_as_the_platform(
    tmp_path: Path, platform: str, transport: str, model: str, request_id: str
) -> None:
    out = tmp_path / "out"
    result = locust(
        "-f", str(ROOT / "locustfile.py"), "--headless", "--platform", platform, "--transport", transport,
        "-u", "2", "-r", "2", "-t", "4s", "--report-dir", str(out), "--simulator-args", "--ttft 0.02 --tps 2000",
        cwd=tmp_path, env=fresh_machine(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    name = platform.capitalize()
    assert f"started the embedded simulator as {name} at http://127.0.0.1:" in result.stderr
    finished = [r for r in read_jsonl(out / "requests.jsonl") if r["outcome"] != "cancelled"]
    assert finished and all(r["outcome"] == "ok" and r["ttft_s"] > 0 for r in finished)
    assert {r["model"] for r in finished} == {model}
    assert all(r["request_id"].startswith(request_id) for r in finished)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["platform"] == platform
    assert summary["cost"]["by_model"][model]["usd"] > 0  # priced under the platform's id
    assert summary["cost"]["unpriced_calls"] == 0


def test_a_simulator_of_your_own_on_loopback_gets_the_test_credentials(tmp_path: Path) -> None:
    env = fresh_machine(tmp_path) | {"AWS_BEARER_TOKEN_BEDROCK": "ABSK-a-real-looking-token-0123456789"}
    with SimulatorProcess(["--ttft", "0.02", "--tps", "2000"], platform="bedrock") as sim:
        assert sim.url is not None
        result = locust(
            "-f", str(ROOT / "locustfile.py"), "--headless", "--platform", "bedrock", "--host", sim.url,
            "-u", "2", "-r", "2", "-t", "4s", "--report-dir", str(tmp_path / "out"), cwd=tmp_path, env=env,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["overall"]["ok"] > 0 and summary["overall"]["failed"] == 0  # signed with the test keys
    # -t counts from the start of load, not from before the transport's blocking imports at init.
    assert summary["duration_s"] >= 3.9


BEDROCK_URL = "https://bedrock-runtime.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bedrock", "--host", BEDROCK_URL], "no AWS region for --platform bedrock: give --aws-region"),
        (["bedrock", "--host", BEDROCK_URL, "--aws-region", "us-east-1"], "no AWS credentials found"),
        (["vertex", "--host", "https://aiplatform.googleapis.com/v1"], "no Google credentials for --platform vertex"),
    ],
)
def test_a_real_endpoint_without_credentials_stops_at_start(tmp_path: Path, args: list[str], message: str) -> None:
    result = locust(
        "-f", str(ROOT / "locustfile.py"), "--headless", "--transport", "fast", "-u", "1", "-t", "2s",
        "--platform", *args, cwd=tmp_path, env=fresh_machine(tmp_path), timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"locust: error: {message}")


# -- which target, which credentials ---------------------------------------------------------------


def test_the_target_per_platform(tmp_path: Path) -> None:
    bare = {"HOME": str(tmp_path)}
    bedrock, vertex = PlatformTarget("bedrock", "eu-west-1"), PlatformTarget("vertex", "us-east5", "p")
    assert resolve_target(None, bare, bedrock).url is None  # nothing configured: the simulator
    assert resolve_target(None, bare | {"ANTHROPIC_API_KEY": "k" * 20}, bedrock).url is None  # not Bedrock's
    assert resolve_target(None, bare | {"AWS_PROFILE": "dev"}, bedrock).url == (
        "https://bedrock-runtime.eu-west-1.amazonaws.com"
    )
    assert resolve_target(None, bare | {"ANTHROPIC_BEDROCK_BASE_URL": "http://127.0.0.1:9/"}, bedrock).url == (
        "http://127.0.0.1:9"
    )
    assert resolve_target("http://h:1", bare | {"AWS_PROFILE": "dev"}, bedrock).source == "host"
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert has_credentials("bedrock", bare) and not has_credentials("vertex", bare)
    adc = tmp_path / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text("{}")
    assert resolve_target(None, bare, vertex).url == "https://us-east5-aiplatform.googleapis.com/v1"
    assert resolve_target(None, bare, PlatformTarget("vertex", "global")).url == "https://aiplatform.googleapis.com/v1"


def test_options_then_the_sdks_environment_variables() -> None:
    environ = {"AWS_REGION": "us-west-2", "CLOUD_ML_REGION": "europe-west1", "ANTHROPIC_VERTEX_PROJECT_ID": "proj"}
    assert platform_of(HarnessOptions(platform="bedrock"), environ) == PlatformTarget("bedrock", "us-west-2")
    assert platform_of(HarnessOptions(platform="bedrock", aws_region="eu-west-1"), environ).region == "eu-west-1"
    assert platform_of(HarnessOptions(platform="vertex"), environ) == PlatformTarget("vertex", "europe-west1", "proj")
    assert platform_of(HarnessOptions(platform="vertex"), {}) == PlatformTarget("vertex", "global", None)
    with pytest.raises(ConfigError, match="--platform 'azure' is unknown"):
        HarnessOptions(platform="azure")


def test_a_loopback_target_gets_the_test_credentials_never_the_real_ones() -> None:
    real = {"AWS_BEARER_TOKEN_BEDROCK": "ABSK-real-token-0123456789", "AWS_REGION": "eu-west-1"}
    bedrock = HarnessOptions(platform="bedrock")
    local = transport_auth(bedrock, "http://127.0.0.1:8080", real)
    assert (
        local["aws_access_key"] == DEFAULT_ACCESS_KEY_ID and local["api_key"] == "" and local["region"] == "eu-west-1"
    )
    remote = transport_auth(bedrock, "https://bedrock-runtime.eu-west-1.amazonaws.com", real)
    assert remote["api_key"] == real["AWS_BEARER_TOKEN_BEDROCK"] and remote.get("aws_access_key") is None
    vertex = transport_auth(HarnessOptions(platform="vertex"), "http://localhost:9/v1", {})
    assert vertex["api_key"] and vertex["project"] and vertex["region"] == "global"
    assert (
        transport_auth(HarnessOptions(platform="vertex"), "https://aiplatform.googleapis.com/v1", {})["api_key"] == ""
    )


# -- model ids and prices --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "bedrock", "vertex"),
    [
        ("claude-haiku-4-5", "global.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5@20251001"),
        (
            "claude-sonnet-4-5-20250929",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5@20250929",
        ),
        ("claude-opus-4-6", "global.anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        ("claude-opus-4-1", "us.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1@20250805"),
        ("claude-sonnet-4-0", "global.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4@20250514"),
        ("eu.anthropic.claude-haiku-4-5-20251001-v1:0", "eu.anthropic.claude-haiku-4-5-20251001-v1:0", None),
        ("claude-sonnet-4-5@20250929", None, "claude-sonnet-4-5@20250929"),
        ("my-finetune", None, None),
    ],
)
def test_model_ids(model: str, bedrock: str | None, vertex: str | None) -> None:
    assert platform_model(model, "bedrock") == bedrock
    assert platform_model(model, "vertex") == vertex
    assert platform_model(model, "anthropic") == model
    assert is_platform_id("arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-opus-4-1-v1", "bedrock")


def test_platform_paths_and_bodies() -> None:
    body = {"model": "us.anthropic.claude-haiku-4-5-20251001-v1:0", "max_tokens": 5, "messages": [], "stream": True}
    path, sent = bedrock_request(body)
    assert path == "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke-with-response-stream"
    assert sent == {"max_tokens": 5, "messages": [], "anthropic_version": "bedrock-2023-05-31"}
    assert bedrock_request({**body, "stream": False, "model": "arn:aws:x/y"})[0] == "/model/arn:aws:x%2Fy/invoke"
    path, sent = vertex_request({**body, "model": "claude-haiku-4-5@20251001"}, "proj", "us-east5")
    assert (
        path
        == "/projects/proj/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5@20251001:streamRawPredict"
    )
    assert sent == {"max_tokens": 5, "messages": [], "stream": True, "anthropic_version": "vertex-2023-10-16"}


def test_list_prices_per_platform_and_endpoint() -> None:
    haiku = DEFAULT_PRICES["claude-haiku-4-5"]
    assert price_for("global.anthropic.claude-haiku-4-5-20251001-v1:0", DEFAULT_PRICES) == haiku
    assert price_for("claude-haiku-4-5@20251001", DEFAULT_PRICES) == haiku
    regional = price_for("eu.anthropic.claude-haiku-4-5-20251001-v1:0", DEFAULT_PRICES)
    assert regional is not None and (regional.input, regional.output) == (1.1, 5.5)  # regional: +10 %
    old = price_for("us.anthropic.claude-opus-4-1-20250805-v1:0", DEFAULT_PRICES)
    assert old == DEFAULT_PRICES["claude-opus-4-1"]  # before Sonnet 4.5: no premium
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/global.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert price_for(arn, DEFAULT_PRICES) == haiku
    assert list_prices("vertex", "global")["claude-haiku-4-5@20251001"] == haiku
    assert list_prices("vertex", "us-east5")["claude-haiku-4-5@20251001"].output == 5.5


@pytest.mark.parametrize(
    ("outcome", "retried"),
    [
        ("http_424", True),  # Bedrock's overloaded model
        ("http_429", True),
        ("stream_throttlingException", True),
        ("stream_modelStreamErrorException", True),
        ("http_403", False),  # a signature the client got wrong
        ("http_400", False),
        ("protocol", False),  # a frame that fails its CRC
    ],
)
def test_bedrock_failures_that_retries_resend(outcome: str, retried: bool) -> None:
    record = CallRecord(call_id="1", scenario="s", model="m", stream=True, outcome=Outcome.parse(outcome))
    assert is_retryable(record) is retried
