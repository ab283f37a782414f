"""End-to-end test of the ODS and DWS dbt models on the defect fixture (tests/python/landing_fixture.py).

Runs the real dbt project against a DuckDB file in tmp_path; each dbt run gets its own
target path so parallel runs do not collide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from landing_fixture import V1, V2, Fixture, write_landing_fixture

PROJECT_DIR = Path(__file__).resolve().parents[2]
DBT = str(Path(sys.executable).parent / "dbt")


def run_dbt(args: list[str], landing: Path, db: Path, target: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NEV_LANDING_ROOT=str(landing), NEV_DUCKDB_PATH=str(db))
    cmd = [
        DBT,
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
        "--target-path",
        str(target),
    ]
    proc = subprocess.run(
        cmd, check=False, env=env, capture_output=True, text=True, cwd=PROJECT_DIR
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(sql).fetchall()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Fixture, Path]:
    base = tmp_path_factory.mktemp("dbt_full")
    fx = write_landing_fixture(base / "landing")
    db = base / "full.duckdb"
    run_dbt(["build"], fx.root, db, base / "target")
    return fx, db


def test_landing_audit(built: tuple[Fixture, Path]) -> None:
    _, db = built
    rows = dict(
        query(
            db,
            "select file_path, error_code from ods.ods_landing_file where error_code is not null",
        )
    )
    assert rows["gbt32960_realtime/dt=2024-03-02/corrupt-0001.parquet"] == "unreadable_file"
    assert rows["gbt32960_realtime/dt=2024-03-02/truncated-0001.parquet"] == "unreadable_file"
    assert rows["gbt32960_realtime/dt=2024-03-02/missing-0001.parquet"] == "missing_column"
    assert rows["gbt32960_realtime/dt=2024-03-01/empty-0001.parquet"] == "empty_file"
    assert rows["gbt32960_realtime/dt=2024-03-03"] == "empty_partition"


def test_ods_reads_only_valid_files(built: tuple[Fixture, Path]) -> None:
    fx, db = built
    (n,) = query(db, "select count(*) from ods.ods_gbt32960_realtime")[0]
    assert n == fx.valid_rows
    files = {r[0] for r in query(db, "select distinct source_file from ods.ods_gbt32960_realtime")}
    assert not any("corrupt" in f or "missing" in f or "truncated" in f for f in files)


def test_ods_decoding(built: tuple[Fixture, Path]) -> None:
    _, db = built
    # V2 reports discharge as negative: flipped to +50 A; V1 is +50 A as is.
    cur = dict(
        query(
            db,
            """
        select vin, max(total_current_a) from ods.ods_gbt32960_realtime
        where vin in ('LNVTEST0000000001', 'LNVTEST0000000002') and charge_status = 3 group by vin""",
        )
    )
    assert cur == {V1: 50.0, V2: 50.0}
    r = query(
        db,
        """
        select speed_kmh, total_voltage_v, soc_pct, gear_position, has_drive_force, has_brake_force,
               max_temp_c, min_cell_voltage_v, cell_voltages_mv[1], probe_temps_c[1], abnormal_fields, invalid_fields
        from ods.ods_gbt32960_realtime
        where vin = 'LNVTEST0000000001' and collect_time = timestamp '2024-03-01 08:00:00' and cmd = 2""",
    )[0]
    assert r[0] == 60.0 and abs(r[1] - 355.3) < 0.11 and r[2] == 80.0
    assert r[3:6] == ("D", True, False)
    assert r[6] == 26.0 and r[7] == 3.7 and r[8] == 3700 and r[9] == 25.0
    assert r[10] == [] and r[11] == []
    # braking without travel value
    r = query(
        db,
        """select brake_pedal_pct, is_brake_applied from ods.ods_gbt32960_realtime
                     where vin = 'LNVTEST0000000001' and collect_time = timestamp '2024-03-01 08:16:40'""",
    )[0]
    assert r == (None, True)
    # markers -> null, listed
    r = query(
        db,
        """select speed_kmh, soc_pct, odometer_km, cell_voltages_mv[4], probe_temps_c[3],
                            list_sort(abnormal_fields), list_sort(invalid_fields)
                     from ods.ods_gbt32960_realtime
                     where vin = 'LNVTEST0000000001' and collect_time = timestamp '2024-03-01 08:06:40'""",
    )[0]
    assert r[:5] == (None, None, None, None, None)
    assert r[5] == ["odometer", "probe_temps", "speed"] and r[6] == ["cell_voltages", "soc"]


def test_each_defect_is_quarantined(built: tuple[Fixture, Path]) -> None:
    fx, db = built
    q = query(
        db, "select vin, collect_time, reason_code, field_name, action from dws.dws_quarantine"
    )
    got = {(v, t, rc, f, a) for v, t, rc, f, a in q}
    missing = [
        e
        for e in fx.expected
        if (e.vin, e.collect_time, e.reason_code, e.field_name, e.action) not in got
    ]
    assert not missing
    # nothing quarantined beyond the injected defects
    assert len(q) == len(fx.expected)


def test_rejected_rows_absent_and_kept_resends(built: tuple[Fixture, Path]) -> None:
    fx, db = built
    rejected = {(e.vin, e.collect_time) for e in fx.expected if e.action == "reject_row"}
    frame = {
        (v, t): (cmd, src)
        for v, t, cmd, src in query(
            db, "select vin, collect_time, cmd, source_file from dws.dws_realtime_frame"
        )
    }
    for key in rejected:
        if key[0] == V1 and key[1].minute in (1, 3):  # duplicate / resend: the cmd-2 original stays
            assert frame[key][0] == 2 and "part-0000" in frame[key][1]
        else:
            assert key not in frame
    # link-outage re-sends and the 1-s pre-alarm frame are kept as cmd 3
    cmd3 = [k for k, (cmd, _) in frame.items() if cmd == 3]
    assert len(cmd3) == 4


def test_dws_field_cleaning(built: tuple[Fixture, Path]) -> None:
    _, db = built

    def frame(t: str, cols: str, vin: str = V1) -> tuple:
        return query(
            db,
            f"select {cols} from dws.dws_realtime_frame "
            f"where vin = '{vin}' and collect_time = timestamp '2024-03-01 {t}'",
        )[0]

    assert frame("08:08:20", "speed_kmh, is_cleaned, cleaned_fields") == (None, True, ["speed"])
    assert frame("08:08:40", "cleaned_fields") == (["cell_voltages"],)
    r = query(
        db,
        "select cell_voltages_mv[6], cell_voltages_mv[5] from dws.dws_cell_frame "
        f"where vin = '{V1}' and collect_time = timestamp '2024-03-01 08:08:40'",
    )[0]
    assert r == (None, 3704)
    assert frame("08:08:50", "max_temp_c") == (None,)
    assert frame("08:09:10", "total_voltage_v, cleaned_fields") == (None, ["total_voltage"])
    assert frame("08:15:50", "charge_status") == (None,)
    assert frame("08:15:00", "vehicle_status, speed_kmh", V2) == (None, 60.0)
    # odometer jump and reset corrected to the neighbours' median (within a few frames of travel)
    for t, true_km in (("08:10:00", 12355.0), ("08:11:40", 12356.6), ("08:12:00", 12357.0)):
        (odo,) = frame(t, "odometer_km")
        assert abs(odo - true_km) < 1.0, (t, odo)
    # clean frames are untouched
    (n_clean_touched,) = query(
        db,
        """select count(*) from dws.dws_realtime_frame
        where collect_date = date '2024-03-02' and is_cleaned""",
    )[0]
    assert n_clean_touched == 0


def test_reconciliation(built: tuple[Fixture, Path]) -> None:
    fx, db = built
    (frames,) = query(db, "select count(*) from dws.dws_realtime_frame")[0]
    (rejected,) = query(
        db,
        """select count(distinct (source_file, source_row_number))
                               from dws.dws_quarantine where action = 'reject_row'""",
    )[0]
    assert frames + rejected == fx.valid_rows


def _table_rows(db: Path, table: str, order: str) -> list[tuple]:
    return query(db, f"select * from {table} order by {order}")


def test_day_by_day_equals_full(built: tuple[Fixture, Path], tmp_path: Path) -> None:
    fx, full_db = built
    db = tmp_path / "daily.duckdb"
    run_dbt(["build"], fx.root, db, tmp_path / "t0")
    with duckdb.connect(str(db)) as con:
        con.execute("delete from dws.dws_realtime_checked")
        con.execute("delete from dws.dws_quarantine")
    dates = [
        d
        for (d,) in query(
            full_db, "select distinct collect_date from ods.ods_gbt32960_realtime order by 1"
        )
    ]
    assert len(dates) == 4
    for i, d in enumerate(dates):
        run_dbt(
            [
                "build",
                "--select",
                "dws_realtime_checked",
                "dws_realtime_frame",
                "dws_quarantine",
                "test_dws_realtime_frame__reconciles_with_ods",
                "--vars",
                json.dumps({"batch_dates": [d.isoformat()]}),
            ],
            fx.root,
            db,
            tmp_path / f"t{i + 1}",
        )
    for table, order in (
        ("dws.dws_realtime_frame", "vin, collect_time"),
        ("dws.dws_quarantine", "source_file, source_row_number, field_name, reason_code"),
    ):
        assert _table_rows(db, table, order) == _table_rows(full_db, table, order), table
    # re-running a day is idempotent
    run_dbt(
        [
            "run",
            "--select",
            "dws_realtime_checked",
            "dws_quarantine",
            "--vars",
            json.dumps({"batch_dates": [dates[1].isoformat()]}),
        ],
        fx.root,
        db,
        tmp_path / "t9",
    )
    assert _table_rows(db, "dws.dws_realtime_frame", "vin, collect_time") == _table_rows(
        full_db, "dws.dws_realtime_frame", "vin, collect_time"
    )


def test_reject_row_action_from_seed(built: tuple[Fixture, Path], tmp_path: Path) -> None:
    """Switching a limit to reject_row is a seed (config) change only."""
    fx, _ = built
    db = tmp_path / "reject.duckdb"
    run_dbt(
        ["build", "--exclude", "dws_realtime_checked+"],
        fx.root,
        db,
        tmp_path / "t0",
    )
    with duckdb.connect(str(db)) as con:
        con.execute(
            "update dws.signal_range_limits set action = 'reject_row' where signal = 'speed_kmh'"
        )
    run_dbt(
        [
            "build",
            "--select",
            "dws_realtime_checked+",
            "--exclude",
            "signal_range_limits",
        ],
        fx.root,
        db,
        tmp_path / "t1",
    )
    r = query(
        db,
        """select reason_code, field_name, action, original_value from dws.dws_quarantine
                     where vin = 'LNVTEST0000000001' and collect_time = timestamp '2024-03-01 08:08:20'""",
    )
    assert r == [("out_of_range", "row", "reject_row", "speed_kmh=4000.0")]
