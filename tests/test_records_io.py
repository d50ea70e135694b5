"""A rotated requests.jsonl set is written whole and read back once, in order, plain or gzipped."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.errors import ConfigError
from harness.core.measure import OK, CallRecord
from harness.core.records_io import (
    CURRENT,
    RotatingRequestsWriter,
    gzip_part,
    parse_size,
    read_lines,
    read_records,
    record_files,
)


def record(i: int) -> CallRecord:
    # Lines of different lengths, and a non-ASCII scenario name counted in bytes.
    return CallRecord(f"call-{i}", "chat-é" if i % 3 else "rag", "m", True, OK, itl_s=[0.01] * (i % 7))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.integers(0, 120), rotate_bytes=st.integers(1, 3000), compress=st.booleans())
def test_a_rotated_set_reads_back_every_line_once_in_order(
    tmp_path: Path, calls: int, rotate_bytes: int, compress: bool
) -> None:
    out = tmp_path / f"run-{calls}-{rotate_bytes}-{compress}"
    writer = RotatingRequestsWriter(out, rotate_bytes, compress=compress)
    writer.open()
    for i in range(calls):
        writer.write(record(i))
    writer.close()
    assert [r.call_id for r in read_records(out)] == [f"call-{i}" for i in range(calls)]
    parts = record_files(out)[:-1]
    assert len(parts) == writer.parts
    assert all(p.name.endswith(".jsonl.gz" if compress else ".jsonl") for p in parts)
    for part in parts:  # every closed part passed the size, and not by more than its last line
        text = gzip.decompress(part.read_bytes()).decode() if compress else part.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        size = sum(len(line.encode()) for line in lines)
        assert size >= rotate_bytes and size - len(lines[-1].encode()) < rotate_bytes


def test_the_part_names_and_their_order(tmp_path: Path) -> None:
    writer = RotatingRequestsWriter(tmp_path, 1)  # one line per part
    writer.open()
    for i in range(12):
        writer.write(record(i))
    writer.write_line('{"call_id": "last"}')
    writer.close()
    names = [p.name for p in record_files(tmp_path)]
    assert names == [f"requests-{n:06d}.jsonl.gz" for n in range(1, 14)] + [CURRENT]
    assert (tmp_path / CURRENT).read_text() == ""  # the last line filled its part, which closed


def test_a_part_caught_mid_compression_is_read_once(tmp_path: Path) -> None:
    writer = RotatingRequestsWriter(tmp_path, 200, compress=False)
    writer.open()
    for i in range(20):
        writer.write(record(i))
    writer.close()
    first = record_files(tmp_path)[0]
    # The moment after the .gz is renamed into place and before the plain original is removed.
    with open(first, "rb") as src, gzip.open(first.with_name(first.name + ".gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    (tmp_path / f".{first.name}.gz.tmp").write_bytes(b"\x1f\x8b half")  # a compression in progress
    assert [r.call_id for r in read_records(tmp_path)] == [f"call-{i}" for i in range(20)]
    gzip_part(record_files(tmp_path)[1])
    assert [r.call_id for r in read_records(tmp_path)] == [f"call-{i}" for i in range(20)]


def test_lines_are_on_disk_as_soon_as_written(tmp_path: Path) -> None:
    """Line-buffered: a run killed now would leave both lines whole."""
    writer = RotatingRequestsWriter(tmp_path)
    writer.open()
    writer.write(record(1))
    writer.write(record(2))
    on_disk = (tmp_path / CURRENT).read_text()
    assert on_disk.endswith("\n") and [json.loads(x)["call_id"] for x in on_disk.splitlines()] == ["call-1", "call-2"]
    writer.close()


def test_a_torn_last_line_is_skipped_and_any_other_bad_line_is_an_error(tmp_path: Path) -> None:
    writer = RotatingRequestsWriter(tmp_path, 300)
    writer.open()
    for i in range(10):
        writer.write(record(i))
    writer.close()
    with open(tmp_path / CURRENT, "a", encoding="utf-8") as f:
        f.write('{"call_id": "call-10", "scen')  # killed mid-write
    assert [r.call_id for r in read_records(tmp_path)][-1] == "call-9"

    with open(tmp_path / CURRENT, "a", encoding="utf-8") as f:
        f.write("\n")  # a whole line now: it was not torn, it is damaged
    with pytest.raises(ConfigError, match=r"requests\.jsonl:\d+: not a JSON line"):
        list(read_records(tmp_path))


def test_a_damaged_middle_part_names_its_file(tmp_path: Path) -> None:
    writer = RotatingRequestsWriter(tmp_path, 200, compress=False)
    writer.open()
    for i in range(10):
        writer.write(record(i))
    writer.close()
    first = record_files(tmp_path)[0]
    first.write_text(first.read_text()[:-30])  # torn, but not the set's last line
    with pytest.raises(ConfigError, match=rf"{first.name}:\d+: not a JSON line"):
        list(read_lines(tmp_path))


def test_a_new_run_starts_a_fresh_set(tmp_path: Path) -> None:
    writer = RotatingRequestsWriter(tmp_path, 100)
    writer.open()
    for i in range(10):
        writer.write(record(i))
    writer.open()  # the next run, e.g. restarted from the web UI
    writer.write(record(99))
    writer.close()
    assert [r.call_id for r in read_records(tmp_path)] == ["call-99"]


def test_without_rotation_it_is_todays_single_file(tmp_path: Path) -> None:
    writer = RotatingRequestsWriter(tmp_path)
    writer.open()
    for i in range(50):
        writer.write(record(i))
    writer.close()
    assert sorted(os.listdir(tmp_path)) == [CURRENT]
    assert writer.lines == 50 and writer.parts == 0


def test_no_set_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run with --report-dir"):
        list(read_records(tmp_path))


@pytest.mark.parametrize(
    ("text", "size"),
    [("100", 100), ("100MB", 10**8), ("1.5G", 1_500_000_000), ("512KiB", 512 * 1024), (" 2 mib ", 2 * 2**20)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-5MB", "10 parsecs", "MB", "0.1"])
def test_bad_sizes_say_what_to_give(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--rotate-records .*: give a size in bytes such as 100MB"):
        parse_size(text)


def test_compression_in_another_thread_leaves_a_complete_gzipped_set(tmp_path: Path) -> None:
    """How a gevent runtime runs it: gzip in a real thread while lines go on being written."""
    with ThreadPoolExecutor(1) as pool:
        writer = RotatingRequestsWriter(tmp_path, 2000, run_in=pool.submit)
        writer.open()
        for i in range(300):
            writer.write(record(i))
        writer.close()
    assert [r.call_id for r in read_records(tmp_path)] == [f"call-{i}" for i in range(300)]
    assert all(p.suffix == ".gz" for p in record_files(tmp_path)[:-1]) and writer.parts >= 5
    assert not list(tmp_path.glob(".*.tmp"))
