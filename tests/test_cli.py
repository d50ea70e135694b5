"""The ``locust`` CLI as a user runs it: a subprocess, headless, against the auto-started simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .locust_runs import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
MARKER_KEY = "sk-ant-MARKER-never-print-me-0123456789"


def locust_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without LOCUST_*/ANTHROPIC_* settings, plus ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))}
    full_env.update(env or {})
    return full_env


def locust(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", *args],
        cwd=cwd,
        env=locust_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def locust_to_log(*args: str, log: Path, timeout: float, cwd: Path = ROOT) -> int | None:
    """``python -m locust ARGS`` with its output in the file ``log``; its exit code, None if it timed out.

    A file, not a pipe: forked workers (``--processes``) would hold a pipe open past a timeout's kill.
    """
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", *args],
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None


def start_locust(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Like :func:`locust`, started in the background so several runs overlap (a locustfile in
    ``cwd`` imports the harness from this checkout)."""
    full_env = locust_env(env)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "locust", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_headless_run_against_the_embedded_simulator(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = locust(
        "-f",
        str(ROOT / "locustfile.py"),
        "--headless",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        "6s",
        "--report-dir",
        str(out),
        "--json-file",
        str(tmp_path / "stats"),
        "--csv",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr
    assert sum("started the embedded simulator at http://127.0.0.1:" in line for line in log.splitlines()) == 1
    assert "COMPLETION  ShortChat" in log and "TTFT     ShortChat" in log
    assert "HTTP Request:" not in log  # the SDK's per-request INFO lines are silenced

    lines = read_jsonl(out / "requests.jsonl")
    finished = [line for line in lines if line["outcome"] != "cancelled"]
    assert finished and all(line["outcome"] == "ok" for line in finished)
    assert len({line["call_id"] for line in lines}) == len(lines)
    assert all(line["ttft_s"] > 0 and line["output_tokens"] > 0 for line in finished)

    stats = {(s["method"], s["name"]): s for s in json.loads((tmp_path / "stats.json").read_text())}
    assert stats[("COMPLETION", "ShortChat")]["num_requests"] == len(finished)
    csv_rows = (tmp_path / "run_stats.csv").read_text().splitlines()
    completion_csv = next(row for row in csv_rows if row.startswith("COMPLETION,ShortChat,"))
    assert completion_csv.split(",")[2] == str(len(finished))

    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["calls"] == len(lines)
    assert summary["overall"]["ok"] == len(finished)
    assert summary["scenarios"]["ShortChat"]["ttft_s"]["count"] == len(finished)
    ttfts = sorted(line["ttft_s"] for line in finished)
    assert summary["overall"]["ttft_s"]["max"] == ttfts[-1]
    assert summary["config"]["report_dir"] == str(out)


def test_report_dir_from_locust_conf_and_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "locust.conf").write_text(
        f"locustfile = {ROOT / 'locustfile.py'}\nheadless = true\nusers = 1\nrun-time = 2s\nreport-dir = from_conf\n"
    )
    result = locust(cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "from_conf" / "summary.json").exists()

    result = locust(
        "-f",
        str(ROOT / "locustfile.py"),
        "--headless",
        "-u",
        "1",
        "-t",
        "2s",
        cwd=tmp_path,
        env={"LOCUST_REPORT_DIR": "from_env"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "from_env" / "requests.jsonl").exists()


BAD_SCENARIO = """
from harness import AnthropicUser

class NoModel(AnthropicUser):
    prompt = "hello"
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--transport", "carrier-pigeon"], "invalid choice: 'carrier-pigeon'"),
        (["--host", "ftp://example"], "is not an http(s) URL"),
        (["--max-tokens", "-5"], "--max-tokens must be a positive integer"),
        (["-f", "BAD"], "scenario NoModel"),
    ],
)
def test_bad_input_stops_at_start_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad_scenario.py"
    bad.write_text(BAD_SCENARIO)
    args = [str(bad) if a == "BAD" else a for a in args]
    if "-f" not in args:
        args = ["-f", str(ROOT / "locustfile.py"), *args]
    result = locust(*args, "--headless", "-u", "1", "-t", "2s", timeout=30)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr


def test_the_api_key_never_appears_in_output_or_files(tmp_path: Path) -> None:
    from harness.simulator.launcher import SimulatorProcess

    with SimulatorProcess() as sim:
        out = tmp_path / "out"
        result = locust(
            "-f",
            str(ROOT / "locustfile.py"),
            "--headless",
            "-u",
            "2",
            "-t",
            "2s",
            "--report-dir",
            str(out),
            "--csv",
            str(tmp_path / "run"),
            "--loglevel",
            "DEBUG",
            env={"ANTHROPIC_API_KEY": MARKER_KEY, "ANTHROPIC_BASE_URL": str(sim.url)},
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "started the embedded simulator" not in result.stderr
    assert MARKER_KEY not in result.stdout + result.stderr
    assert MARKER_KEY[8:20] not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert MARKER_KEY not in path.read_text(errors="replace"), path
    assert read_jsonl(out / "requests.jsonl")
