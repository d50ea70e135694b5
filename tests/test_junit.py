"""JUnit XML and the terminal verdict, built from SLO results: schema-valid, honest, no key, no colour in logs."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import xmlschema

from harness.core.slo import evaluate, parse_slos
from harness.outputs.junit import junit_document, write_junit
from harness.outputs.verdict import render_verdict, use_colour

XSD = Path(__file__).resolve().parent / "junit.xsd"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def _block(ttft_p95: float, calls: int = 100, failed: int = 0) -> dict[str, Any]:
    return {
        "calls": calls,
        "ok": calls - failed,
        "failed": failed,
        "cancelled": 0,
        "errors": {"http_529": failed} if failed else {},
        "error_rate": failed / calls,
        "requests_per_s": 10.0,
        "output_tokens_per_s": 900.0,
        "goodput_per_s": 9.0,
        "ttft_s": {"count": calls - failed, "mean": 0.2, "p50": 0.2, "p90": 0.3, "p95": ttft_p95}
        | {"p99": 0.5, "max": 0.6},
    }


SUMMARY: dict[str, Any] = {
    "duration_s": 12.5,
    "overall": _block(0.412, failed=2),
    "scenarios": {"HaikuChat": _block(0.250), "Sonnet & <Co>": _block(0.9)},
    "stages": {"8": {"overall": _block(0.7), "scenarios": {"HaikuChat": _block(0.65)}}},
    "config": {"host": "http://127.0.0.1:9", "scenarios": ["HaikuChat", "Sonnet & <Co>"], "users": 8, "model": ""},
}


def _results(*texts: str) -> list[Any]:
    return evaluate(parse_slos(texts), SUMMARY)


def test_one_testcase_per_slo_scoped_by_classname_and_valid(schema: xmlschema.XMLSchema) -> None:
    results = _results(
        "ttft_p95<500ms", "HaikuChat:ttft_p95<300ms", "stage=8:HaikuChat:ttft_p95<600ms", "error_rate<1%"
    )
    text = junit_document(results, SUMMARY)
    schema.validate(text)
    root = ET.fromstring(text)
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    assert root.get("failures") == "2"
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert list(cases) == [
        ("slo.overall", "ttft_p95<500ms"),
        ("slo.HaikuChat", "HaikuChat:ttft_p95<300ms"),
        ("slo.stage=8.HaikuChat", "stage=8:HaikuChat:ttft_p95<600ms"),
        ("slo.overall", "error_rate<1%"),
    ]
    assert cases[("slo.overall", "ttft_p95<500ms")].find("failure") is None
    assert cases[("slo.HaikuChat", "HaikuChat:ttft_p95<300ms")].find("failure") is None
    stage_failure = cases[("slo.stage=8.HaikuChat", "stage=8:HaikuChat:ttft_p95<600ms")].find("failure")
    assert stage_failure is not None
    expected = "stage=8:HaikuChat:ttft_p95<600ms: measured 650.0ms, limit < 600.0ms (breached)"
    assert stage_failure.get("message") == expected
    error_failure = cases[("slo.overall", "error_rate<1%")].find("failure")
    assert error_failure is not None and "measured 2.00%, limit < 1.00%" in (error_failure.get("message") or "")
    assert "http_529" in (error_failure.text or "")


def test_properties_hold_the_configuration_and_never_the_key(
    schema: xmlschema.XMLSchema, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = "sk-ant-MARKER-junit-0123456789"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    summary = {**SUMMARY, "config": {**SUMMARY["config"], "host": f"http://127.0.0.1:9/?k={key}"}}
    path = tmp_path / "reports" / "junit.xml"
    write_junit(path, _results("ttft_p95<1s"), summary)
    text = path.read_text()
    schema.validate(text)
    assert key not in text
    props = {p.get("name"): p.get("value") for p in ET.fromstring(text).iter("property")}
    assert props["users"] == "8" and props["scenarios"] == "HaikuChat,Sonnet & <Co>"
    assert props["slo"] == "ttft_p95<1s" and props["duration_s"] == "12.500"
    assert props["host"] == "http://127.0.0.1:9/?k=***"
    assert "model" not in props  # empty values are left out


def test_a_scope_with_no_samples_fails_with_a_reason(schema: xmlschema.XMLSchema) -> None:
    [result] = _results("stage=99:ttft_p95<1s")
    text = junit_document([result], SUMMARY)
    schema.validate(text)
    failure = ET.fromstring(text).find("testsuite/testcase/failure")
    assert failure is not None and "measured no samples" in (failure.get("message") or "")
    assert "no calls were measured in this scope" in (failure.text or "")


def test_no_slos_still_gives_a_valid_report(schema: xmlschema.XMLSchema) -> None:
    text = junit_document([], SUMMARY)
    schema.validate(text)
    assert ET.fromstring(text).find("testsuite").get("tests") == "0"  # type: ignore[union-attr]


def test_the_schema_rejects_what_ci_readers_would_not_take(schema: xmlschema.XMLSchema) -> None:
    good = junit_document(_results("ttft_p95<300ms"), SUMMARY)
    assert schema.is_valid(good)
    assert not schema.is_valid(good.replace('failures="1"', 'failures="one"', 1))
    assert not schema.is_valid(good.replace('<testsuite name="llm-slo"', "<testsuite", 1))
    assert not schema.is_valid(good.replace("<failure ", "<failed ", 1).replace("</failure>", "</failed>"))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_verdict_colours_only_a_terminal_without_no_color() -> None:
    assert use_colour(_Terminal(), {}) is True
    assert use_colour(_Terminal(), {"NO_COLOR": "1"}) is False
    assert use_colour(io.StringIO(), {}) is False
    results = _results("ttft_p95<500ms", "ttft_p95<300ms")
    plain = render_verdict(SUMMARY, results, exit_code=3, colour=False)
    coloured = render_verdict(SUMMARY, results, exit_code=3, colour=True)
    assert not ANSI.search(plain) and ANSI.search(coloured)
    assert ANSI.sub("", coloured) == plain


def test_verdict_table_rows_and_result_line() -> None:
    text = render_verdict(SUMMARY, _results("ttft_p95<500ms", "ttft_p95<300ms"), exit_code=3)
    lines = text.splitlines()
    assert re.search(r"ttft_p95<500ms\s+412\.0ms\s+< 500\.0ms\s+PASS$", text, re.M)
    assert re.search(r"ttft_p95<300ms\s+412\.0ms\s+< 300\.0ms\s+FAIL$", text, re.M)
    assert "100 calls in 12.5s: 98 ok, 2 failed (2.00%), 0 cancelled" in text
    assert re.search(r"TTFT\s+98\s+200\.0ms\s+300\.0ms\s+412\.0ms\s+500\.0ms\s+600\.0ms", text)
    assert lines[-1] == "Result: FAIL, 1 of 2 SLOs breached (exit code 3)"
    passed = render_verdict(SUMMARY, _results("ttft_p95<500ms"), exit_code=0).splitlines()[-1]
    assert passed == "Result: PASS, all 1 SLOs met (exit code 0)"
