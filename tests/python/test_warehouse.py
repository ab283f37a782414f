"""The warehouse built with dbt on DuckDB from a simulated fleet: cleaning measured against the
simulator's truth, layer reconciliation, and incremental = full refresh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from nev_battery.evaluate import evaluate_charges, evaluate_cleaning
from nev_battery.simulate import LANDING_SCHEMA, SimConfig, simulate

PROJECT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "nev_battery.cli"]
FLEET = SimConfig(vehicles=20, days=6, seed=23)


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    p = subprocess.run([*CLI, *args], check=False, cwd=PROJECT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"nev-battery {' '.join(args)} failed:\n{p.stdout[-4000:]}\n"
                             f"{p.stderr[-4000:]}")
    return p


def wh_env(root: Path, db: str) -> dict:
    env = dict(os.environ)
    env.update(NEV_LANDING_ROOT=str(root / "landing"), NEV_DUCKDB_PATH=str(root / db),
               DBT_TARGET_PATH=str(root / f"target-{db}"), DBT_LOG_PATH=str(root / "logs"),
               DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("wh")
    simulate(FLEET, root / "landing", root / "truth")
    env = wh_env(root, "full.duckdb")
    run_cli(["build", "--full-refresh"], env)
    return root, env


def q(db: Path, sql: str):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_cleaning_against_dirty_truth(built):
    """≥ 99 % of injected dirty records rejected or corrected, ≤ 0.1 % of clean frames touched."""
    root, _ = built
    with duckdb.connect(str(root / "full.duckdb"), read_only=True) as con:
        rep = evaluate_cleaning(con, root / "truth")
    print("\n" + rep.format())
    assert rep.per_defect.injected.sum() >= 300
    assert rep.recall >= 0.99
    assert rep.false_touch_rate <= 0.001
    assert rep.sign_flip_vehicles == 0 or rep.sign_flip_corrected == rep.sign_flip_vehicles


def test_ods_rows_equal_dws_plus_rejected_per_day(built):
    root, _ = built
    bad = q(root / "full.duckdb", """
        with o as (select collect_date, count(*) n from ods.ods_gbt32960_realtime group by 1),
        d as (select collect_date, count(*) n from dws.dws_realtime_frame group by 1),
        r as (select collect_date, count(distinct (source_file, source_row_number)) n
              from dws.dws_quarantine where action = 'reject_row' group by 1)
        select o.collect_date, o.n, d.n, r.n from o
        left join d using (collect_date) left join r using (collect_date)
        where o.n <> coalesce(d.n, 0) + coalesce(r.n, 0)
    """)
    assert bad == []
    n_ods = q(root / "full.duckdb", "select count(*) from ods.ods_gbt32960_realtime")[0][0]
    assert n_ods > 50_000


def _table_diff(db_a: Path, db_b: Path, table: str) -> tuple[int, int, int]:
    with duckdb.connect() as con:
        con.execute(f"attach '{db_a}' as a (read_only)")
        con.execute(f"attach '{db_b}' as b (read_only)")
        n = con.execute(f"select count(*) from a.{table}").fetchall()[0][0]
        ab = con.execute(f"select count(*) from (select * from a.{table} except all "
                         f"select * from b.{table})").fetchall()[0][0]
        ba = con.execute(f"select count(*) from (select * from b.{table} except all "
                         f"select * from a.{table})").fetchall()[0][0]
    return n, ab, ba


# tables, not views: a view in an attached database may bind to another catalog
INCREMENTAL_TABLES = ("dws.dws_realtime_checked", "dws.dws_quarantine", "dwd.dwd_charge_segment",
                      "dwd.dwd_drive_trip", "dwd.dwd_vehicle_daily", "dwd.dwd_vehicle_lifetime",
                      "dwd.dwd_vehicle_soh_feature")
ALL_MODELS = "+dws_quarantine +dwd_vehicle_soh_feature"


def test_day_by_day_build_equals_full_refresh(built):
    """Row for row, values included: segments and trips over midnight, lifetime counters
    carried from run to run."""
    root, _ = built
    env = wh_env(root, "daily.duckdb")
    dates = sorted(p.name[3:] for p in (root / "landing" / "gbt32960_realtime").glob("dt=*"))
    assert len(dates) >= FLEET.days
    # the first run creates the tables; every later run replaces only its own days
    for d in dates:
        run_cli(["build", "--dates", d, "--select", ALL_MODELS,
                 "--skip-tests"], env)
    for table in INCREMENTAL_TABLES:
        n, ab, ba = _table_diff(root / "full.duckdb", root / "daily.duckdb", table)
        assert n > 0 and ab == 0 and ba == 0, (table, n, ab, ba)
    # the fleet has sessions over midnight, so the equality above covers them
    over_midnight = q(root / "full.duckdb", """select count(*) from dwd.dwd_charge_segment
        where cast(end_time as date) > start_date""")[0][0]
    assert over_midnight > 0


def test_backfill_changes_only_that_day_and_what_depends_on_it(built, tmp_path):
    """Half of one day's frames are withdrawn from the landing zone and the day is back-filled:
    DWS changes on that day only, segments/trips/daily rows on that day and the one before
    (a segment over midnight), lifetime counters from that day on; nothing else moves."""
    root, _ = built
    work = tmp_path / "bf"
    shutil.copytree(root / "landing", work / "landing")
    shutil.copy(root / "full.duckdb", work / "wh.duckdb")
    env = wh_env(work, "wh.duckdb")
    # the third simulated day (later partitions also hold a few frames with a clock ahead)
    day = sorted((work / "landing" / "gbt32960_realtime").glob("dt=2026-*"))[2]
    d = day.name[3:]
    for f in sorted(day.glob("part-*.parquet")):
        t = pq.read_table(f)
        pq.write_table(t.slice(0, t.num_rows // 2), f)
    # withdrawn frames shrink history: the operator's consent is required (test_hostile_inputs)
    run_cli(["backfill", "--start", d, "--end", d, "--select", ALL_MODELS,
             "--skip-tests", "--allow-shrink"], env)
    date_col = {"dws.dws_realtime_checked": "collect_date", "dws.dws_quarantine": "collect_date",
                "dwd.dwd_charge_segment": "start_date", "dwd.dwd_drive_trip": "start_date",
                "dwd.dwd_vehicle_daily": "date", "dwd.dwd_vehicle_lifetime": "date",
                "dwd.dwd_vehicle_soh_feature": "date"}
    with duckdb.connect() as con:
        con.execute(f"attach '{root / 'full.duckdb'}' as a (read_only)")
        con.execute(f"attach '{work / 'wh.duckdb'}' as b (read_only)")
        for table, col in date_col.items():
            changed = con.execute(f"""
                select distinct {col} from (
                    (select * from a.{table} except all select * from b.{table})
                    union all
                    (select * from b.{table} except all select * from a.{table}))
            """).fetchall()
            changed = {str(r[0]) for r in changed}
            prev = str(date.fromisoformat(d) - timedelta(days=1))
            carried = table.endswith(("lifetime", "soh_feature"))  # every later day depends on it
            allowed = ({d} if table.startswith("dws.") else
                       {x for x in changed if x >= d} if carried else {d, prev})
            assert changed, table
            assert changed <= allowed, (table, sorted(changed - allowed))


def test_charge_segments_against_truth(built):
    """Segments vs the simulator's true sessions (the 100-vehicle x 30-day figures are in the
    README, measured with `nev-battery evaluate charges`)."""
    root, _ = built
    with duckdb.connect(str(root / "full.duckdb")) as con:
        rep = evaluate_charges(con, root / "truth")
    print("\n" + rep.format())
    assert rep.true_sessions >= 50
    assert rep.recall >= 0.99
    assert rep.spurious_rate <= 0.01
    assert rep.start_soc_exact == rep.found and rep.end_soc_exact == rep.found
    assert rep.ah_rel_err.median() <= 0.01
    assert rep.ah_within(0.02, calibrated=True) >= 0.95


def test_daily_run_picks_up_a_late_file(built, tmp_path):
    """A file landing in an old partition after it was processed is picked up by the next
    daily run even though that partition is outside the look-back window."""
    root, _ = built
    work = tmp_path / "late"
    shutil.copytree(root / "landing", work / "landing")
    shutil.copy(root / "full.duckdb", work / "wh.duckdb")
    env = wh_env(work, "wh.duckdb")
    parts = sorted((work / "landing" / "gbt32960_realtime").glob("dt=2026-*"))
    old = parts[1]
    before = q(work / "wh.duckdb", f"select count(*) from dws.dws_realtime_frame "
                                   f"where collect_date = date '{old.name[3:]}'")[0][0]
    # a late file: 50 of the day's frames re-sent once more as cmd 3 with a new receive time,
    # and one new frame a minute after the last one of the day
    con = duckdb.connect()
    resend = con.sql(f"""
        select * replace (3 as cmd, receive_time + interval 2 day as receive_time)
        from read_parquet('{old}/part-*.parquet', hive_partitioning = false) order by collect_time limit 50
    """).to_arrow_table()
    new_frame = con.sql(f"""
        select * replace (collect_time + interval 1 minute as collect_time, 3 as cmd,
                          receive_time + interval 2 day as receive_time)
        from read_parquet('{old}/part-*.parquet', hive_partitioning = false) where cmd = 2
        order by collect_time desc limit 1
    """).to_arrow_table()
    pq.write_table(resend.cast(LANDING_SCHEMA), old / "late-0001.parquet")
    pq.write_table(new_frame.cast(LANDING_SCHEMA), old / "late-0002.parquet")
    run_date = parts[-1].name[3:]
    p = run_cli(["daily", "--date", run_date, "--lookback-days", "0",
                 "--select", "+dws_realtime_frame+ +dws_quarantine+"], env)
    assert old.name[3:] in p.stdout
    after = q(work / "wh.duckdb", f"select count(*) from dws.dws_realtime_frame "
                                  f"where collect_date = date '{old.name[3:]}'")[0][0]
    assert after == before + 1  # the 50 re-sends are duplicates, the new frame is kept
    dups = q(work / "wh.duckdb", f"""select count(*) from dws.dws_quarantine
        where collect_date = date '{old.name[3:]}' and source_file like '%late-0001%'
          and reason_code = 'resend_duplicate'""")[0][0]
    assert dups == 50


def _day_run_fails(work: Path, day: str, model: str) -> str:
    """Output of a failed day run of one model (materialization day_replace)."""
    env = wh_env(work, "wh.duckdb")
    with pytest.raises(AssertionError) as err:
        run_cli(["build", "--dates", day, "--select", model, "--skip-tests"], env)
    return str(err.value)


def _rows(db: Path, table: str) -> list[tuple]:
    return sorted(q(db, f"select * from {table}"), key=repr)


def test_a_day_run_stops_when_the_columns_changed(built, tmp_path):
    """The query's columns must equal the table's; the run names the difference and the
    remedy, and leaves the table as it was."""
    root, _ = built
    work = tmp_path / "cols"
    shutil.copytree(root / "landing", work / "landing")
    shutil.copy(root / "full.duckdb", work / "wh.duckdb")
    with duckdb.connect(str(work / "wh.duckdb")) as con:
        con.execute("alter table dws.dws_quarantine add column extra_note integer")
    before = _rows(work / "wh.duckdb", "dws.dws_quarantine")
    day = sorted(p.name[3:] for p in (work / "landing" / "gbt32960_realtime").glob("dt=2026-*"))[1]
    out = _day_run_fails(work, day, "dws_quarantine")
    assert "extra_note: table INTEGER, query missing" in out
    assert "--full-refresh" in out
    assert _rows(work / "wh.duckdb", "dws.dws_quarantine") == before


def test_a_day_run_that_fails_after_its_delete_changes_nothing(built, tmp_path):
    """The rebuilt days are deleted and the new rows inserted in one transaction: an insert
    that fails (here a unique index the rebuilt day violates) rolls the delete back."""
    root, _ = built
    work = tmp_path / "rollback"
    shutil.copytree(root / "landing", work / "landing")
    shutil.copy(root / "full.duckdb", work / "wh.duckdb")
    day = sorted(p.name[3:] for p in (work / "landing" / "gbt32960_realtime").glob("dt=2026-*"))[1]
    with duckdb.connect(str(work / "wh.duckdb")) as con:
        n_day = con.execute(f"select count(*) from dws.dws_quarantine "
                            f"where collect_date = date '{day}'").fetchall()[0][0]
        assert n_day > 0
        # one quarantined field issue of the day moved to the day after: the rebuilt day
        # recreates its key, which the index then forbids twice
        key = con.execute(f"""select source_file, source_row_number, field_name, reason_code
            from dws.dws_quarantine where collect_date = date '{day}' and field_name is not null
            order by all limit 1""").fetchall()[0]
        con.execute("""update dws.dws_quarantine set collect_date = collect_date + 1
            where source_file = ? and source_row_number = ? and field_name = ?
              and reason_code = ?""", list(key))
        con.execute("create unique index quarantine_key on dws.dws_quarantine "
                    "(source_file, source_row_number, field_name, reason_code)")
    before = _rows(work / "wh.duckdb", "dws.dws_quarantine")
    out = _day_run_fails(work, day, "dws_quarantine")
    assert "constraint" in out.lower(), out[-2000:]
    after = _rows(work / "wh.duckdb", "dws.dws_quarantine")
    assert after == before
    # the day's rows are all back (one of them moved to the next day above)
    assert q(work / "wh.duckdb", f"select count(*) from dws.dws_quarantine "
                                 f"where collect_date = date '{day}'")[0][0] == n_day - 1


def test_sqlfluff_lint_models(tmp_path):
    env = dict(os.environ, DBT_PROFILES_DIR=str(PROJECT), NEV_DUCKDB_PATH=str(tmp_path / "l.db"),
               DBT_TARGET_PATH=str(tmp_path / "target"), DBT_LOG_PATH=str(tmp_path / "logs"))
    p = subprocess.run([str(Path(sys.executable).parent / "sqlfluff"), "lint", "models",
                        "tests/dbt", "--disable-progress-bar"], check=False, cwd=PROJECT, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]


def test_demo_command_prints_the_summary(tmp_path):
    """`make run` is `nev-battery demo`: simulate, build in-process, then read the warehouse."""
    env = wh_env(tmp_path, "demo.duckdb")
    p = run_cli(["demo", "--vehicles", "3", "--days", "2", "--seed", "5",
                 "--out", str(tmp_path / "landing"), "--truth", str(tmp_path / "truth")], env)
    assert "rows per model, by layer:" in p.stdout
    assert "dws.dws_realtime_checked" in p.stdout
    assert "make run total" in p.stdout
