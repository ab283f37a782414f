"""The offline jobs on Dagster (src/nev_battery/orchestration.py), run through Dagster's own
harness (execute_in_process): a month of a small fleet arriving day by day, a custom-range
back-fill, a simulated week of daily runs (a partition arriving late, a failed run retried and
visible, then rerun), the weekly and the monthly job; the warehouse then equals a full build row for
row."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from nev_battery.landing import MASTER_TABLE, REALTIME_TABLE
from nev_battery.simulate import SimConfig, simulate
from nev_battery.warehouse import connect

dg = pytest.importorskip("dagster", reason="Dagster is the extra 'scheduler' (make installs it)")

PROJECT = Path(__file__).resolve().parents[2]
# March 2026, five vehicles
FLEET = SimConfig(vehicles=5, days=31, seed=17, fault_share=0.4)
WEEK = [str(date(2026, 3, 25) + timedelta(days=i)) for i in range(7)]


def _copy_day(src: Path, dst: Path, day: str) -> None:
    shutil.copytree(src / REALTIME_TABLE / f"dt={day}", dst / REALTIME_TABLE / f"dt={day}")


def _tables(con: duckdb.DuckDBPyConnection, db: str) -> list[str]:
    return [f"{s}.{t}" for s, t in con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = ? and "
        "schema_name in ('ods', 'dws', 'dwd', 'ads') order by 1, 2", [db]).fetchall()]


def _diffs(full: Path, sched: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    # the scheduled warehouse through the instance dbt-duckdb keeps open in this process (its
    # in-process runs): DuckDB refuses a second instance of the file
    with connect() as con:
        con.execute(f"attach '{full}' as a (read_only)")
        con.execute(f"use {sched.stem}")
        tables = _tables(con, "a")
        assert tables == _tables(con, sched.stem)
        for table in tables:
            s, t = table.split(".")
            cols = [r[0] for r in con.execute(
                "select column_name from duckdb_columns() where database_name = 'a' and "
                "schema_name = ? and table_name = ? order by column_index", [s, t]).fetchall()]
            # the rules history records when each run saw the rules
            sel = ", ".join(f'"{c}"' for c in cols if c != "detected_at")
            n = con.execute(f"select count(*) from a.{table}").fetchall()[0][0]
            ab, ba = (con.execute(f"select count(*) from (select {sel} from {x}.{table} except "
                                  f"all select {sel} from {y}.{table})").fetchall()[0][0]
                      for x, y in (("a", sched.stem), (sched.stem, "a")))
            if ab or ba:
                out[table] = (n, ab, ba)
    return out


def _failure_messages(result) -> list[str]:
    """The messages of the failed steps' errors and their causes (what the UI shows)."""
    out = []
    for e in result.all_events:
        if e.event_type_value == "STEP_FAILURE":
            err = e.event_specific_data.error
            while err is not None:
                out.append(err.message)
                err = err.cause
    return out


@pytest.fixture
def scheduled(tmp_path, monkeypatch):
    root = tmp_path
    simulate(FLEET, root / "all", root / "truth")
    landing = root / "landing"
    shutil.copytree(root / "all" / MASTER_TABLE, landing / MASTER_TABLE)
    env = {"NEV_LANDING_ROOT": landing, "NEV_DUCKDB_PATH": root / "sched.duckdb",
           "DBT_TARGET_PATH": root / "target-sched", "DBT_LOG_PATH": root / "logs",
           "NEV_LAKE_ROOT": root / "lake", "NEV_REPORTS_DIR": root / "reports",
           "NEV_FAILURE_LOG": root / "failures.log", "NEV_RETRIES": "1",
           "NEV_RETRY_DELAY_S": "0", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
           # models only (the monthly SOH retrain keeps the registry's tests): the test's time
           "NEV_JOB_SKIP_TESTS": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    for k in ("NEV_RULES_URL", "NEV_PUBLISH_TARGET", "NEV_DAILY_LOOKBACK_DAYS"):
        monkeypatch.delenv(k, raising=False)
    # the retry policy is read when the module is imported
    orch = importlib.reload(importlib.import_module("nev_battery.orchestration"))
    return root, orch, dg.DagsterInstance.ephemeral()


def test_a_week_and_a_month_through_dagster_equal_a_full_build(scheduled):
    root, orch, instance = scheduled
    landing = root / "landing"
    parts = sorted(p.name[3:] for p in (root / "all" / REALTIME_TABLE).glob("dt=*"))
    days = [d for d in parts if d.startswith("2026-03")]
    assert days[0] == "2026-03-01" and days[-1] == "2026-03-31"
    # T-BOXes with a wrong clock write into far-away partitions (2000-01-01, April)
    past = [d for d in parts if d < days[0]]
    future = [d for d in parts if d > days[-1]]
    assert past and future

    # the custom-range back-fill: the month's first 24 days (the wrong-clock partition of 2000 is
    # there too, outside the range: the next daily run finds it)
    for d in past + days[:24]:
        _copy_day(root / "all", landing, d)
    res = orch.backfill.execute_in_process(
        run_config={"ops": {"backfill_range": {"config": {"start": days[0], "end": days[23]}}}},
        instance=instance)
    assert res.success
    assert res.output_for_node("backfill_range") == days[:24]
    assert res.output_for_node("publish_changed_months") == ["2026-03"]

    def daily(day: str):
        return orch.daily.execute_in_process(partition_key=day, instance=instance,
                                             raise_on_error=False)

    # a simulated week of daily runs, one partition (the 26th) arriving two days late
    _copy_day(root / "all", landing, WEEK[0])
    res = daily(WEEK[0])
    assert res.success
    assert set(past) <= set(res.output_for_node("daily_run"))
    assert res.output_for_node("publish_changed_months") == ["2000-01", "2026-03"]
    late = daily(WEEK[1])  # its partition is not there: retried, then failed visibly
    assert not late.success
    messages = _failure_messages(late)
    assert any(f"dt={WEEK[1]} is not there yet" in m for m in messages), messages
    retried = [e for e in late.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retried) == 1
    # the failure sensor writes it to the operators' failure log
    orch.failure_log(dg.build_run_status_sensor_context(
        sensor_name="failure_log", dagster_event=late.get_run_failure_event(),
        dagster_instance=instance, dagster_run=late.dagster_run).for_run_failure())
    assert f"daily {WEEK[1]} {late.run_id}" in (root / "failures.log").read_text()
    _copy_day(root / "all", landing, WEEK[1])
    _copy_day(root / "all", landing, WEEK[2])
    res = daily(WEEK[2])
    assert res.success
    assert WEEK[1] in res.output_for_node("daily_run")  # the late partition is picked up
    assert daily(WEEK[1]).success  # and the failed day reruns
    for d in WEEK[3:]:
        _copy_day(root / "all", landing, d)
        if d == WEEK[-1]:
            for f in future:
                _copy_day(root / "all", landing, f)
        assert daily(d).success

    # the weekly and the monthly job
    res = orch.weekly.execute_in_process(partition_key="2026-03-23", instance=instance)
    assert res.success
    report = Path(res.output_for_node("weekly_reports"))
    assert report.read_text().startswith("fleet report, week of 2026-03-23")
    res = orch.monthly.execute_in_process(partition_key="2026-03-01", instance=instance)
    assert res.success
    assert (root / "lake").is_dir() and any((root / "lake").rglob("month=2026-03/*"))

    # the reference: one full build of the whole month
    env = dict(os.environ, NEV_LANDING_ROOT=str(root / "all"),
               NEV_DUCKDB_PATH=str(root / "full.duckdb"), DBT_TARGET_PATH=str(root / "target-full"))
    p = subprocess.run([sys.executable, "-m", "nev_battery.cli", "build", "--full-refresh",
                        "--skip-tests"],
                       cwd=PROJECT, env=env, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert _diffs(root / "full.duckdb", root / "sched.duckdb") == {}
    with connect() as con:
        assert con.execute("select count(*) from ads.ads_battery_warning").fetchall()[0][0] > 0
