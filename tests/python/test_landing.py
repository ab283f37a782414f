"""Unit tests of the landing-zone audit (footers only)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nev_battery.landing import (
    MASTER_SCHEMA,
    REALTIME_SCHEMA,
    LandingError,
    audit_landing,
    format_audit_problems,
    verify_file_data,
)


def _row() -> dict:
    ts = dt.datetime(2024, 3, 1, 8, 0, 0)
    row: dict = {c: 1 for c in REALTIME_SCHEMA}
    row.update(
        vin="LNVTEST0000000001",
        collect_time=ts,
        receive_time=ts,
        battery_fault_codes=[],
        cell_voltages=[3700, 3701],
        probe_temps=[65],
    )
    return row


def _write(path: Path, rows: list[dict], schema: dict[str, pa.DataType]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(list(schema.items()))), path)


def _master(root: Path) -> None:
    row = {
        "vin": "LNVTEST0000000001",
        "vehicle_model": "M1",
        "chemistry": "NCM",
        "rated_capacity_ah": 150.0,
        "rated_energy_kwh": 53.0,
        "cells_in_series": 2,
        "temp_probes": 1,
        "current_discharge_positive": True,
        "in_service_date": dt.date(2023, 1, 1),
        "usage_type": "private",
        "region": "Beijing",
    }
    _write(root / "vehicle_master" / "part-0.parquet", [row], MASTER_SCHEMA)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    _master(tmp_path)
    part = tmp_path / "gbt32960_realtime" / "dt=2024-03-01"
    _write(part / "good.parquet", [_row(), _row()], REALTIME_SCHEMA)
    _write(part / "zero.parquet", [], REALTIME_SCHEMA)
    (part / "corrupt.parquet").write_bytes(b"PAR1 garbage")
    no_speed = {k: v for k, v in REALTIME_SCHEMA.items() if k != "speed"}
    _write(part / "missing.parquet", [{k: v for k, v in _row().items() if k != "speed"}], no_speed)
    wrong = dict(REALTIME_SCHEMA, speed=pa.int64(), collect_time=pa.timestamp("us"))
    _write(part / "wrongtype.parquet", [_row()], wrong)
    wrong_list = dict(REALTIME_SCHEMA, cell_voltages=pa.list_(pa.int64()))
    _write(part / "wronglist.parquet", [_row()], wrong_list)
    (tmp_path / "gbt32960_realtime" / "dt=2024-03-02").mkdir()
    return tmp_path


def _by_file(df, name: str):
    hit = df[df["file_path"].str.endswith(name)]
    assert len(hit) == 1, name
    return hit.iloc[0]


def test_good_file(landing: Path) -> None:
    df = audit_landing(landing)
    r = _by_file(df, "dt=2024-03-01/good.parquet")
    assert r["is_valid"] and r["row_count"] == 2
    assert pd.isna(r["error_code"]) and pd.isna(r["error_message"])
    assert r["table_name"] == "gbt32960_realtime"
    assert r["partition_date"] == dt.date(2024, 3, 1)
    assert r["file_path"] == "gbt32960_realtime/dt=2024-03-01/good.parquet"


def test_master_file(landing: Path) -> None:
    r = _by_file(audit_landing(landing), "vehicle_master/part-0.parquet")
    assert r["is_valid"] and r["row_count"] == 1 and r["table_name"] == "vehicle_master"
    assert pd.isna(r["partition_date"])


def test_corrupt_file(landing: Path) -> None:
    r = _by_file(audit_landing(landing), "corrupt.parquet")
    assert not r["is_valid"] and r["error_code"] == "unreadable_file"
    assert "corrupt.parquet" in r["error_message"] and "magic" in r["error_message"].lower()


def test_truncated_file(tmp_path: Path) -> None:
    _master(tmp_path)
    p = tmp_path / "gbt32960_realtime" / "dt=2024-03-01" / "t.parquet"
    _write(p, [_row()], REALTIME_SCHEMA)
    p.write_bytes(p.read_bytes()[:-10])
    r = _by_file(audit_landing(tmp_path), "t.parquet")
    assert not r["is_valid"] and r["error_code"] == "unreadable_file"


def test_missing_column(landing: Path) -> None:
    r = _by_file(audit_landing(landing), "missing.parquet")
    assert not r["is_valid"] and r["error_code"] == "missing_column"
    assert "speed" in r["error_message"]


def test_wrong_types(landing: Path) -> None:
    df = audit_landing(landing)
    r = _by_file(df, "wrongtype.parquet")
    assert not r["is_valid"] and r["error_code"] == "wrong_type"
    assert "speed: int64" in r["error_message"] and "collect_time" in r["error_message"]
    r = _by_file(df, "wronglist.parquet")
    assert (
        not r["is_valid"]
        and r["error_code"] == "wrong_type"
        and "cell_voltages" in r["error_message"]
    )


def test_zero_row_file(landing: Path) -> None:
    r = _by_file(audit_landing(landing), "zero.parquet")
    assert r["is_valid"] and r["error_code"] == "empty_file" and r["row_count"] == 0


def test_empty_partition(landing: Path) -> None:
    r = _by_file(audit_landing(landing), "dt=2024-03-02")
    assert r["is_valid"] and r["error_code"] == "empty_partition"
    assert r["file_path"] == "gbt32960_realtime/dt=2024-03-02"


def test_missing_master(tmp_path: Path) -> None:
    _write(
        tmp_path / "gbt32960_realtime" / "dt=2024-03-01" / "a.parquet", [_row()], REALTIME_SCHEMA
    )
    r = _by_file(audit_landing(tmp_path), "vehicle_master")
    assert not r["is_valid"] and r["error_code"] == "missing_table"


def test_format_problems(landing: Path) -> None:
    df = audit_landing(landing)
    problems = format_audit_problems(df)
    errors = [p for p in problems if p.startswith("ERROR")]
    warns = [p for p in problems if p.startswith("WARN")]
    assert len(errors) == 4 and len(warns) == 2
    assert any("corrupt.parquet" in p for p in errors)
    assert str(LandingError(problems)).count("\n") == len(problems)


def test_columns_and_grain(landing: Path) -> None:
    df = audit_landing(landing)
    assert list(df.columns) == [
        "table_name",
        "file_path",
        "partition_date",
        "row_count",
        "is_valid",
        "error_code",
        "error_message",
    ]
    assert not df.duplicated(["table_name", "file_path"]).any()


def test_bad_partition_folder_gets_one_row_even_when_empty(landing: Path) -> None:
    bad = landing / "gbt32960_realtime" / "dt=2026-13-45"
    bad.mkdir()
    (landing / "gbt32960_realtime" / "dt=yesterday").mkdir()
    _write(bad / "a.parquet", [_row()], REALTIME_SCHEMA)
    df = audit_landing(landing)
    for name in ("dt=2026-13-45", "dt=yesterday"):
        r = _by_file(df, name)
        assert not r["is_valid"] and r["error_code"] == "bad_partition"
        assert name in r["error_message"] and "YYYY-MM-DD" in r["error_message"]
    assert not df["file_path"].str.contains("dt=2026-13-45/").any()


def test_files_where_nothing_reads_are_unexpected_paths(landing: Path) -> None:
    rt = landing / "gbt32960_realtime"
    part = rt / "dt=2024-03-01"
    for p in (part / "sub" / "x.parquet", rt / "loose.parquet", part / "upper.PARQUET",
              part / "notes.txt", landing / "vehicle_master" / "old" / "m.parquet"):
        _write(p, [_row()], REALTIME_SCHEMA) if p.suffix == ".parquet" else p.parent.mkdir(
            parents=True, exist_ok=True) or p.write_text("x")
    df = audit_landing(landing)
    for name in ("dt=2024-03-01/sub/x.parquet", "gbt32960_realtime/loose.parquet",
                 "upper.PARQUET", "notes.txt", "vehicle_master/old/m.parquet"):
        r = _by_file(df, name)
        assert not r["is_valid"] and r["error_code"] == "unexpected_path", name
        assert name in r["error_message"]
    # the partition's own files are still audited as before
    assert _by_file(df, "dt=2024-03-01/good.parquet")["is_valid"]


def test_quarantined_file_is_invalid_as_corrupt_data(landing: Path) -> None:
    rel = "gbt32960_realtime/dt=2024-03-01/good.parquet"
    r = _by_file(audit_landing(landing, {rel: f"{rel}: data cannot be decoded"}), "good.parquet")
    assert not r["is_valid"] and r["error_code"] == "corrupt_data"
    assert r["row_count"] == 2 and "cannot be decoded" in r["error_message"]


def test_verify_file_data_finds_a_corrupt_page(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    _write(good, [_row() for _ in range(2000)], REALTIME_SCHEMA)
    assert verify_file_data(good, "gbt32960_realtime") is None
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes())
    md = pq.read_metadata(bad).row_group(0)
    chunk = next(md.column(i) for i in range(md.num_columns)
                 if md.column(i).path_in_schema.startswith("cell_voltages"))
    with open(bad, "r+b") as f:
        f.seek(chunk.data_page_offset)
        f.write(b"\xff" * min(64, chunk.total_compressed_size))
    assert pq.read_metadata(bad).num_rows == 2000  # the footer still reads
    # the reader's own error (here "don't know what type", naming no file: the caller names it)
    assert verify_file_data(bad, "gbt32960_realtime") is not None
