"""``--slo`` in a pipeline: the ``locust`` CLI as a CI job runs it, against the simulator.

Exit code 0 when every SLO is met, 3 on a breach (with every artefact still written),
2 for an invalid SLO with nothing sent; the same SLOs from locust.conf, pyproject.toml
and the environment; ``--stop-timeout`` lets in-flight streams finish.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import xmlschema

from harness.core.exitcodes import EXIT_CONFIG, EXIT_SLO_BREACH
from harness.core.measure import CANCELLED
from harness.core.slo import parse_slos
from harness.outputs.slo_gate import EXIT_CONFIG as CLI_EXIT_CONFIG
from harness.outputs.slo_gate import EXIT_SLO_BREACH as CLI_EXIT_SLO_BREACH
from harness.outputs.slo_gate import SLOGate
from harness.simulator.launcher import SimulatorProcess

from .held_streams import HeldStreams
from .locust_runs import read_jsonl, run_local
from .test_cli import ROOT, locust, start_locust

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).resolve().parent / "junit.xsd"))
LOCUSTFILE = str(ROOT / "locustfile.py")
# Short calls (16 tokens, ~0.4 s) so a short run has samples and in-flight calls end quickly.
SHORT_RUN = ("-f", LOCUSTFILE, "--headless", "-u", "3", "-r", "3", "-t", "3s", "--max-tokens", "16")


def junit_cases(path: Path) -> list[ET.Element]:
    SCHEMA.validate(str(path))
    return list(ET.parse(path).getroot().iter("testcase"))


def summary_of(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "summary.json").read_text())


def test_exit_code_constants_agree() -> None:
    assert (CLI_EXIT_CONFIG, CLI_EXIT_SLO_BREACH) == (EXIT_CONFIG, EXIT_SLO_BREACH) == (2, 3)


@dataclass
class Finished:
    directory: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def passed_and_breached(tmp_path_factory: pytest.TempPathFactory, scripted_url: str) -> Iterator[dict[str, Finished]]:
    """Two CLI runs side by side (to save time): SLOs that hold, and one that cannot.

    The breached run's users are short calls and calls held open by the scripted server
    (tests/held_streams.py), so its stop by -t always finds calls in flight to cut off.
    """
    passed, breached = tmp_path_factory.mktemp("passed"), tmp_path_factory.mktemp("breached")
    # The command line's SLOs replace those of a config file (which would be breached).
    (passed / "locust.conf").write_text("slo = completion_p50<1ms\n")
    streams = HeldStreams(scripted_url, breached, quick=2, held=1)
    runs = {
        "passed": start_locust(
            *SHORT_RUN,
            *("--stop-timeout", "5", "--report-dir", "out", "--junit-xml", "junit.xml"),
            *("--slo", "ttft_p95<20s", "--slo", "ShortChat:completion_p99<=30s,error_rate<1%"),
            cwd=passed,
        ),
        "breached": start_locust(
            *("-f", str(streams.locustfile), *SHORT_RUN[2:], "--host", scripted_url),
            *("--report-dir", "out", "--junit-xml", "junit.xml", "--csv", "run", "--html", "report.html"),
            *("--slo", "completion_p50<1ms", "--slo", "ttft_p95<20s"),
            cwd=breached,
            env={"PYTHONPATH": str(ROOT)},  # its locustfile is in the run's directory
        ),
    }
    done = {}
    try:
        for (name, process), directory in zip(runs.items(), (passed, breached), strict=True):
            stdout, stderr = process.communicate(timeout=120)
            done[name] = Finished(directory, process.returncode, stdout, stderr)
    finally:
        streams.release()
    yield done


def test_met_slos_exit_0_with_passing_testcases_and_stop_timeout_lets_calls_finish(
    passed_and_breached: dict[str, Finished],
) -> None:
    run = passed_and_breached["passed"]
    assert run.returncode == 0, run.stderr[-3000:]
    cases = junit_cases(run.directory / "junit.xml")
    assert [c.get("name") for c in cases] == ["ttft_p95<20s", "ShortChat:completion_p99<=30s", "error_rate<1%"]
    assert all(c.find("failure") is None for c in cases)

    summary = summary_of(run.directory / "out")
    assert summary["slo"]["passed"] is True
    assert [r["passed"] for r in summary["slo"]["results"]] == [True, True, True]
    assert summary["slo"]["results"][0]["measured"] == summary["overall"]["ttft_s"]["p95"]

    # --stop-timeout: the users finish the call they are in, so nothing is cut off.
    records = read_jsonl(run.directory / "out" / "requests.jsonl")
    assert records and all(r["outcome"] == "ok" for r in records), {r["outcome"] for r in records}
    assert summary["overall"]["cancelled"] == 0

    assert "Result: PASS, all 3 SLOs met (exit code 0)" in run.stdout
    assert "\x1b[" not in run.stdout  # not a terminal: no colour codes


def test_a_breached_slo_exits_3_quotes_measured_vs_limit_and_writes_every_artefact(
    passed_and_breached: dict[str, Finished],
) -> None:
    run = passed_and_breached["breached"]
    assert run.returncode == EXIT_SLO_BREACH, run.stderr[-3000:]
    summary = summary_of(run.directory / "out")
    measured_ms = f"{summary['overall']['completion_s']['p50'] * 1000:.1f}ms"
    message = f"completion_p50<1ms: measured {measured_ms}, limit < 1.0ms (breached)"

    breached, met = junit_cases(run.directory / "junit.xml")
    failure = breached.find("failure")
    assert failure is not None and failure.get("message") == message
    assert met.find("failure") is None

    assert summary["slo"]["passed"] is False and summary["slo"]["breached"] == 1
    assert [r["passed"] for r in summary["slo"]["results"]] == [False, True]
    for artefact in ("run_stats.csv", "run_failures.csv", "report.html", "out/requests.jsonl"):
        assert (run.directory / artefact).stat().st_size > 0, artefact
    assert f"SLO breached: {message}" in run.stderr  # the log line
    assert f"SLO breached: {message}" in run.stdout  # and the verdict
    assert "Result: FAIL, 1 of 2 SLOs breached (exit code 3)" in run.stdout

    # Without --stop-timeout (Locust's default 0) the calls in flight at the end are cut off: the held
    # one always, and never as a failure.
    records = read_jsonl(run.directory / "out" / "requests.jsonl")
    assert [r["outcome"] for r in records if r["scenario"] == "HeldAtTheStop"] == [CANCELLED]
    assert {r["outcome"] for r in records} <= {"ok", CANCELLED} and summary["overall"]["ok"] > 0


@pytest.fixture(scope="module")
def traced_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    trace = tmp_path_factory.mktemp("trace") / "trace.jsonl"
    with SimulatorProcess(["--trace", str(trace)]) as sim:
        assert sim.url is not None
        yield sim.url, trace


@pytest.mark.parametrize(
    ("slo", "message"),
    [
        ("ttft_p95<800", "SLO 'ttft_p95<800': a latency needs a unit, ms or s"),
        ("latency_p95<1s", "unknown metric 'latency_p95'; valid metrics: ttft_{p50|p90|p95|p99|max|mean}"),
        ("ttft_p95 ~ 1s", "does not parse"),
        ("HaikuChat:ttft_p95<1s", "names scenario 'HaikuChat', which this run does not have; scenarios: ShortChat"),
    ],
)
def test_an_invalid_slo_exits_2_with_one_line_and_sends_nothing(
    traced_simulator: tuple[str, Path], tmp_path: Path, slo: str, message: str
) -> None:
    url, trace = traced_simulator
    result = locust(
        *SHORT_RUN, "--host", url, "--report-dir", str(tmp_path / "out"), "--slo", slo, cwd=tmp_path, timeout=30
    )
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not trace.exists() or trace.read_text() == ""
    assert not (tmp_path / "out").exists()


def test_the_trace_does_record_requests(traced_simulator: tuple[str, Path]) -> None:
    # The check above can fail: one call to the same simulator shows in its trace.
    url, trace = traced_simulator
    before = len(trace.read_text().splitlines()) if trace.exists() else 0
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        f"{url}/v1/messages",
        data=body.encode(),
        headers={"content-type": "application/json", "x-api-key": "sk-test", "anthropic-version": "2023-06-01"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    # The simulator traces a call just after its last write, so the client can read first.
    deadline = time.monotonic() + 5.0
    while len(trace.read_text().splitlines()) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(trace.read_text().splitlines()) == before + 1


def test_the_same_slos_from_locust_conf_pyproject_and_the_environment(tmp_path: Path) -> None:
    # The calls need not finish here (no samples breaches a latency SLO all the same): 1 s is enough.
    settings = {"locustfile": LOCUSTFILE, "headless": "true", "users": "2", "run-time": "1s", "max-tokens": "16"}
    slos = ["completion_p50<1ms", "error_rate<1%"]
    dirs = {name: tmp_path / name for name in ("conf", "toml", "env")}
    for directory in dirs.values():
        directory.mkdir()
    conf = [f"{k} = {v}" for k, v in settings.items()]
    (dirs["conf"] / "locust.conf").write_text("\n".join([*conf, f"slo = [{', '.join(slos)}]", "junit-xml = j.xml"]))
    toml = [f'{k} = "{v}"' for k, v in settings.items()]
    toml += [f"slo = {json.dumps(slos)}", 'junit-xml = "j.xml"', 'report-dir = "from_pyproject"']
    (dirs["toml"] / "pyproject.toml").write_text("\n".join(["[tool.locust]", *toml]) + "\n")
    env = {"LOCUST_SLO": ",".join(slos), "LOCUST_JUNIT_XML": "j.xml"}
    env_args = ("-f", LOCUSTFILE, "--headless", "-u", "2", "-t", "1s", "--max-tokens", "16")

    runs = {
        "conf": start_locust(cwd=dirs["conf"]),
        "toml": start_locust(cwd=dirs["toml"]),
        "env": start_locust(*env_args, cwd=dirs["env"], env=env),
    }
    for where, process in runs.items():
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == EXIT_SLO_BREACH, (where, stderr[-2000:])
        cases = junit_cases(dirs[where] / "j.xml")
        assert [c.get("name") for c in cases] == slos, where
        assert [c.find("failure") is not None for c in cases] == [True, False], where
    # An existing harness option from pyproject.toml's [tool.locust] too.
    assert summary_of(dirs["toml"] / "from_pyproject")["slo"]["breached"] == 1


def test_help_documents_the_options_and_exit_codes() -> None:
    # `locust --help` is printed before the locustfile loads, so it cannot list plugin options.
    result = subprocess.run(
        [sys.executable, "-m", "harness.help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "--slo EXPR" in text and "--junit-xml PATH" in text and "--report-dir DIR" in text
    assert "  0  the run finished and every --slo was met" in text
    assert "  2  invalid configuration: one line on stderr, nothing was sent to the target" in text
    assert "  3  an SLO was breached; every artefact is still written" in text
    assert "Metrics: ttft_{p50|p90|p95|p99|max|mean}" in text


def test_an_overall_error_rate_slo_decides_about_failed_calls(scripted_url: str) -> None:
    from harness import AnthropicUser
    from harness.runtime.state import harness_of

    class Good(AnthropicUser):
        model = "timed"
        prompt = "hi"

    class Overloaded(AnthropicUser):
        model = "http_529"
        prompt = "hi"

        def wait_time(self) -> float:
            return 0.5

    run = run_local([Good, Overloaded], scripted_url, users=2, seconds=2.0)
    summary = harness_of(run.env).last_summary
    assert summary is not None and summary["overall"]["failed"] > 0 and summary["overall"]["ok"] > 0
    rate = summary["overall"]["error_rate"]
    assert 0 < rate < 0.9

    def decided(*slos: str) -> int | None:
        run.env.process_exit_code = None
        gate = SLOGate(run.env, parse_slos(slos))
        gate.conclude(dict(summary))
        assert gate.exit_code() == run.env.process_exit_code
        return run.env.process_exit_code

    # Met, but nothing says failed calls are acceptable: Locust's own rule (exit 1) stands.
    assert decided("ttft_p95<20s") is None
    # An overall error_rate SLO states the tolerance: met means 0, breached means 3.
    assert decided("ttft_p95<20s", "error_rate<95%") == 0
    assert decided("ttft_p95<20s", f"error_rate<{rate * 100 / 2:.3f}%") == EXIT_SLO_BREACH
    # A per-scenario error_rate does not speak for the whole run.
    assert decided("Good:error_rate<1%") is None


def test_sigterm_stops_the_run_and_still_gives_the_slo_verdict(tmp_path: Path) -> None:
    # A CI system cancels a job with SIGTERM; without --run-time that is how a run ends.
    out = tmp_path / "out"
    args = ("-f", LOCUSTFILE, "--headless", "-u", "2", "--max-tokens", "16", "--report-dir", str(out))
    process = start_locust(*args, "--slo", "completion_p50<1ms", "--junit-xml", "j.xml", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            lines = (out / "requests.jsonl").read_text().splitlines() if (out / "requests.jsonl").exists() else []
            if any('"outcome":"ok"' in line for line in lines):
                break
            time.sleep(0.2)
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == EXIT_SLO_BREACH, stderr[-2000:]
    assert "Result: FAIL, 1 of 1 SLOs breached (exit code 3)" in stdout
    assert junit_cases(tmp_path / "j.xml")[0].find("failure") is not None
    assert summary_of(out)["overall"]["ok"] >= 1


def test_the_example_ci_config_passes_and_fails_when_an_slo_is_tightened(tmp_path: Path) -> None:
    # What examples/ci/*.yml run, in a copy of the repository's layout, only shorter.
    conf = ROOT / "examples" / "locust.conf"
    assert "slo = [ttft_p95<2s, completion_p99<15s, error_rate<1%]" in conf.read_text()
    for workflow in ("github-actions.yml", "gitlab-ci.yml"):
        text = (ROOT / "examples" / "ci" / workflow).read_text()
        assert "locust --config examples/locust.conf" in text and "reports/junit.xml" in text, workflow
        assert "- reports/" in text or "path: reports/" in text, workflow
    repos = {name: tmp_path / name for name in ("passing", "tightened")}
    for repo in repos.values():
        (repo / "examples").mkdir(parents=True)
        (repo / "examples" / "locust.conf").symlink_to(conf)
        for name in ("locustfile.py", "scenarios", "harness"):
            (repo / name).symlink_to(ROOT / name)
    short = ("--config", "examples/locust.conf", "-t", "3s", "-u", "3")
    passing = start_locust(*short, cwd=repos["passing"])
    tightened = start_locust(*short, cwd=repos["tightened"], env={"LOCUST_SLO": "ttft_p95<1ms,error_rate<1%"})

    _, stderr = tightened.communicate(timeout=90)
    assert tightened.returncode == EXIT_SLO_BREACH, stderr[-2000:]
    reports = repos["tightened"] / "reports"
    [ttft, errors] = junit_cases(reports / "junit.xml")
    assert ttft.find("failure") is not None and errors.find("failure") is None
    for artefact in ("requests.jsonl", "summary.json", "locust_stats.csv", "locust.html"):
        assert (reports / artefact).stat().st_size > 0, artefact
    assert "SLO breached: ttft_p95<1ms: measured" in stderr

    _, stderr = passing.communicate(timeout=90)
    assert passing.returncode == 0, stderr[-2000:]
    assert all(c.find("failure") is None for c in junit_cases(repos["passing"] / "reports" / "junit.xml"))


def test_stage_slos_see_the_stages_section_other_listeners_add(scripted_url: str, tmp_path: Path) -> None:
    # The load-analysis listener adds summary["stages"]; the gate must evaluate after it.
    import gevent
    from locust.env import Environment

    from harness import AnthropicUser, HarnessOptions, attach

    class Timed(AnthropicUser):
        model = "timed"
        prompt = "hi"

    env = Environment(user_classes=[Timed], host=scripted_url)
    env.create_local_runner()
    attach(env, HarnessOptions(report_dir=str(tmp_path))).transport(scripted_url)

    def add_stages(*, summary: dict[str, Any], **_: Any) -> None:
        summary["stages"] = {"8": {"overall": summary["overall"], "scenarios": summary["scenarios"]}}

    slos = parse_slos(["stage=8:ttft_p95<1s", "stage=8:Timed:completion_p50<1ms", "stage=9:ttft_p95<1s"])
    gate = SLOGate(env, slos, junit_xml=str(tmp_path / "junit.xml")).listen()
    env.events.llm_summary.add_listener(add_stages)  # type: ignore[attr-defined]
    assert env.runner is not None
    env.runner.start(2, spawn_rate=20)
    gevent.sleep(1.5)
    env.runner.quit()

    assert gate.results is not None
    assert [r.passed for r in gate.results] == [True, False, False]
    assert gate.results[0].measured == summary_of(tmp_path)["stages"]["8"]["overall"]["ttft_s"]["p95"]
    assert gate.results[2].measured is None  # stage 9 never ran: no samples, breached
    assert env.process_exit_code == EXIT_SLO_BREACH
    assert [c.get("classname") for c in junit_cases(tmp_path / "junit.xml")] == [
        "slo.stage=8",
        "slo.stage=8.Timed",
        "slo.stage=9",
    ]
