"""The warehouse tried as a hostile user would: a typo in the landing root, files that vanish,
shrink, rot or land where nothing reads them, a changed vehicle master, malformed flags, two runs
at once. Each case asserts the exit code, the message (file, folder, flag or column named) and
that every table is unchanged where nothing should change (row count and a content checksum),
or the quarantine/audit row that records what happened.

One small fleet (10 vehicles x 3 days, the case list's own) is built once; each test works on a
copy of its landing zone (mtimes kept) and warehouse file."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nev_battery.simulate import SimConfig, simulate

PROJECT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "nev_battery.cli"]
FLEET = SimConfig(vehicles=10, days=3, seed=11)
RT = "gbt32960_realtime"
# tables a successful run rewrites although the data did not change: the audit of the landing
# zone (it lists the new stray files) and the manifest (its recorded_at)
RUN_BOOKKEEPING = {"ods.ods_landing_file", "main.nev_landing_state"}


def cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], check=False, cwd=PROJECT, env=env, capture_output=True,
                          text=True)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"{p.args}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def env_for(work: Path) -> dict:
    env = dict(os.environ)
    env.update(NEV_LANDING_ROOT=str(work / "landing"), NEV_DUCKDB_PATH=str(work / "wh.duckdb"),
               DBT_TARGET_PATH=str(work / "target"), DBT_LOG_PATH=str(work / "logs"),
               DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    return env


def fingerprint(db: Path) -> dict[str, tuple]:
    """{schema.table: (rows, order-independent content hash)} of every table of the warehouse."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute("""select table_schema, table_name from information_schema.tables
            where table_type = 'BASE TABLE' and table_schema <> 'dbt_test__audit'""").fetchall()
        return {f"{s}.{t}": con.execute(f'select count(*), sum(hash(x)::hugeint) from "{s}"."{t}" x'
                                        ).fetchall()[0] for s, t in tables}


def assert_unchanged(before_db: Path, db: Path, skip: set[str] = frozenset()) -> None:
    """Every table of db as in before_db (a copy taken before the run), apart from `skip`; on a
    difference the differing rows are shown."""
    a, b = fingerprint(before_db), fingerprint(db)
    diff = sorted(t for t in a.keys() | b.keys() if t not in skip and a.get(t) != b.get(t))
    if diff:
        with duckdb.connect() as con:
            con.execute(f"attach '{before_db}' as a (read_only)")
            con.execute(f"attach '{db}' as b (read_only)")
            shown = {t: (con.execute(f"select * from a.{t} except all select * from b.{t} "
                                     "limit 3").fetchall(),
                         con.execute(f"select * from b.{t} except all select * from a.{t} "
                                     "limit 3").fetchall())
                     for t in diff if t in a and t in b}
        raise AssertionError(f"tables changed: {diff}\n{shown}")


def q(db: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    simulate(FLEET, root / "landing", root / "truth")
    p = ok(cli(["build", "--full-refresh"], env_for(root)))
    return root, p


@pytest.fixture
def work(base, tmp_path) -> Path:
    root, _ = base
    shutil.copytree(root / "landing", tmp_path / "landing")  # copy2: mtimes kept
    shutil.copy(root / "wh.duckdb", tmp_path / "wh.duckdb")
    return tmp_path


def days(work: Path) -> list[str]:
    return sorted(p.name[3:] for p in (work / "landing" / RT).glob("dt=2026-*"))


def day_file(work: Path, day: str, name: str = "part-0000.parquet") -> Path:
    return work / "landing" / RT / f"dt={day}" / name


# --- 1. the landing root ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["typo", "empty"])
def test_a_landing_root_without_partitions_is_refused_before_dbt(work, kind):
    db = work / "wh.duckdb"
    before = fingerprint(db)
    root = work / "x" / "typo"
    if kind == "empty":
        (root / RT).mkdir(parents=True)
    env = dict(env_for(work), NEV_LANDING_ROOT=str(root))
    d = days(work)
    for args in (["build"], ["build", "--full-refresh"], ["daily", "--date", d[1]],
                 ["backfill", "--start", d[0], "--end", d[-1]]):
        p = cli(args, env)
        assert p.returncode == 1, p.stdout + p.stderr
        assert str(root) in p.stderr and "NEV_LANDING_ROOT" in p.stderr
        assert "Running with dbt" not in p.stdout  # refused before dbt ran
    assert fingerprint(db) == before


# --- 2. history never shrinks without consent ---------------------------------------------------

def test_a_vanished_file_stops_the_run_until_the_operator_allows_the_shrink(work):
    db, env = work / "wh.duckdb", env_for(work)
    day = days(work)[1]
    gone = day_file(work, day, "resend.parquet")
    n_gone = pq.read_metadata(gone).num_rows
    rows_before = q(db, "select count(*) from dws.dws_realtime_checked where collect_date = ?",
                    [day])[0][0]
    before = fingerprint(db)
    gone.unlink()
    for args in (["daily", "--date", days(work)[-1]], ["backfill", "--start", day, "--end", day],
                 ["build", "--full-refresh"]):
        p = cli(args, env)
        assert p.returncode == 1, p.stdout + p.stderr
        assert f"{day}: {RT}/dt={day}/resend.parquet vanished ({n_gone:,} rows" in p.stderr
        assert "--allow-shrink" in p.stderr
        assert fingerprint(db) == before
    ok(cli(["backfill", "--start", day, "--end", day, "--allow-shrink", "--skip-tests"], env))
    after = q(db, "select count(*) from dws.dws_realtime_checked where collect_date = ?", [day])
    assert after[0][0] == rows_before - n_gone
    finding = q(db, "select command, finding from main.nev_history_shrink")
    assert len(finding) == 1 and "--allow-shrink" in finding[0][0] and "vanished" in finding[0][1]
    # consented once: the next daily run goes on
    ok(cli(["daily", "--date", days(work)[-1], "--skip-tests"], env))


def test_a_file_truncated_in_place_stops_the_run(work):
    db, env = work / "wh.duckdb", env_for(work)
    day = days(work)[1]
    f = day_file(work, day)
    t = pq.read_table(f)
    before = fingerprint(db)
    pq.write_table(t.slice(0, t.num_rows - 112), f)
    p = cli(["daily", "--date", days(work)[-1]], env)
    assert p.returncode == 1
    assert (f"{day}: {RT}/dt={day}/part-0000.parquet shrank from {t.num_rows:,} to "
            f"{t.num_rows - 112:,} rows (112 rows fewer)") in p.stderr
    assert fingerprint(db) == before


def test_a_master_file_missing_a_column_stops_the_run(work):
    db, env = work / "wh.duckdb", env_for(work)
    master = work / "landing" / "vehicle_master" / "vehicle_master.parquet"
    pq.write_table(pq.read_table(master).drop(["chemistry"]), master)
    before = fingerprint(db)
    p = cli(["daily", "--date", days(work)[-1]], env)
    assert p.returncode == 1
    assert "vehicle_master/vehicle_master.parquet is now missing_column" in p.stderr
    assert "missing required column(s): chemistry" in p.stderr
    assert "10 VIN(s) no longer listed" in p.stderr and "unknown_vin" in p.stderr
    assert fingerprint(db) == before


# --- 3. a corrupt data page ---------------------------------------------------------------------

def _corrupt_copy(src: Path, dst: Path) -> None:
    """A copy of a day file with 64 bytes overwritten inside the cell-voltage column chunk: the
    footer still reads, the data page does not."""
    shutil.copy(src, dst)
    md = pq.read_metadata(dst).row_group(0)
    chunk = next(md.column(i) for i in range(md.num_columns)
                 if md.column(i).path_in_schema.startswith("cell_voltages"))
    with open(dst, "r+b") as f:
        f.seek(chunk.data_page_offset + chunk.total_compressed_size // 2)
        f.write(b"\xff" * 64)


def test_a_file_with_a_corrupt_data_page_is_quarantined_and_the_rest_builds(work):
    db, env = work / "wh.duckdb", env_for(work)
    d = days(work)
    bad = day_file(work, d[1], "part-0001.parquet")
    _corrupt_copy(day_file(work, d[1]), bad)
    before = fingerprint(db)
    # a daily run for another date trips over it (the ODS view reads every valid file)
    p = ok(cli(["daily", "--date", d[-1]], env))
    rel = f"{RT}/dt={d[1]}/part-0001.parquet"
    assert f"quarantined (corrupt_data): {rel}" in p.stdout
    assert q(db, "select is_valid, error_code from ods.ods_landing_file where file_path = ?",
             [rel]) == [(False, "corrupt_data")]
    # the day holds exactly what it held before: the good files built, the corrupt copy left out
    after = fingerprint(db)
    for t in ("dws.dws_realtime_checked", "dws.dws_quarantine", "dwd.dwd_vehicle_daily",
              "ads.ads_fleet_daily_kpi"):
        assert after[t] == before[t], t
    assert rel in ok(cli(["summary"], env)).stdout
    # the quarantine is kept: a later run for any day does not trip over the file again
    p = ok(cli(["backfill", "--start", d[0], "--end", d[0], "--skip-tests"], env))
    assert "quarantined" not in p.stdout and "Failed to read" not in p.stdout


# --- 4 and 5. folders and files nothing reads -----------------------------------------------------

def test_a_bad_partition_and_stray_files_get_audit_rows_and_the_run_goes_on(work):
    db, env = work / "wh.duckdb", env_for(work)
    d = days(work)
    src = day_file(work, d[1])
    rt = work / "landing" / RT
    strays = {f"{RT}/dt=2026-13-45": "bad_partition",
              f"{RT}/dt={d[1]}/sub/part-0000.parquet": "unexpected_path",
              f"{RT}/part-0000.parquet": "unexpected_path",
              f"{RT}/dt={d[1]}/part-0009.PARQUET": "unexpected_path"}
    (rt / "dt=2026-13-45").mkdir()
    shutil.copy(src, rt / "dt=2026-13-45" / "part-0000.parquet")
    (rt / f"dt={d[1]}" / "sub").mkdir()
    shutil.copy(src, rt / f"dt={d[1]}" / "sub" / "part-0000.parquet")
    shutil.copy(src, rt / "part-0000.parquet")
    shutil.copy(src, rt / f"dt={d[1]}" / "part-0009.PARQUET")
    shutil.copy(db, work / "before.duckdb")
    ok(cli(["daily", "--date", d[1]], env))
    audit = dict(q(db, "select file_path, error_code from ods.ods_landing_file "
                       "where error_code in ('bad_partition', 'unexpected_path')"))
    assert audit == strays
    # nothing read twice, nothing lost: every table but the bookkeeping as it was
    assert_unchanged(work / "before.duckdb", db, RUN_BOOKKEEPING)
    summary = ok(cli(["summary"], env)).stdout
    assert all(path in summary for path in strays)


def test_an_unchanged_invalid_file_does_not_rebuild_its_day_on_every_run(work, monkeypatch):
    env = env_for(work)
    d = days(work)
    bad = day_file(work, d[0], "part-0005.parquet")
    pq.write_table(pq.read_table(day_file(work, d[0])).drop(["soc"]), bad)
    p = ok(cli(["daily", "--date", d[-1], "--skip-tests"], env))
    assert d[0] in p.stdout.splitlines()[0]  # the day that received a file is rebuilt
    assert q(work / "wh.duckdb", "select error_code from ods.ods_landing_file where file_path "
             "= ?", [bad.relative_to(work / "landing").as_posix()]) == [("missing_column",)]
    # the next daily run: the bad file is unchanged, so its day is not new again
    from nev_battery.warehouse import daily_batch

    monkeypatch.setenv("NEV_LANDING_ROOT", env["NEV_LANDING_ROOT"])
    monkeypatch.setenv("NEV_DUCKDB_PATH", env["NEV_DUCKDB_PATH"])
    assert daily_batch(date.fromisoformat(d[-1])) == [d[-1]]


# --- 6. the vehicle master ------------------------------------------------------------------------

def test_a_restored_vin_rebuilds_the_days_it_was_quarantined_on(base, tmp_path):
    root, _ = base
    shutil.copytree(root / "landing", tmp_path / "landing")
    env = env_for(tmp_path)
    db = tmp_path / "wh.duckdb"
    master = tmp_path / "landing" / "vehicle_master" / "vehicle_master.parquet"
    full = pq.read_table(master)
    vin = full["vin"][3].as_py()
    pq.write_table(full.filter(pc.not_equal(full["vin"], vin)), master)
    ok(cli(["build", "--full-refresh", "--skip-tests"], env))
    lost = q(db, "select count(*), count(distinct collect_date) from dws.dws_quarantine "
                 "where vin = ? and reason_code = 'unknown_vin'", [vin])[0]
    assert lost[0] > 100 and lost[1] >= 2
    pq.write_table(full, master)  # the VIN restored
    p = ok(cli(["daily", "--date", days(tmp_path)[-1], "--skip-tests"], env))
    assert "vehicle master changed for 1 VIN(s): also rebuilding" in p.stdout
    assert q(db, "select count(*) from dws.dws_quarantine where vin = ? and "
                 "reason_code = 'unknown_vin'", [vin]) == [(0,)]
    assert q(db, "select count(*) from dws.dws_vehicle where vin = ?", [vin]) == [(1,)]
    assert q(db, "select count(distinct date) from dwd.dwd_vehicle_daily where vin = ?",
             [vin])[0][0] >= lost[1]


def test_a_lowercase_vin_is_normalised_and_a_malformed_one_rejected_with_a_reason(work):
    db, env = work / "wh.duckdb", env_for(work)
    master = work / "landing" / "vehicle_master" / "vehicle_master.parquet"
    t = pq.read_table(master).to_pandas()
    vin = t.loc[2, "vin"]
    t.loc[2, "vin"] = vin.lower()
    extra = t.iloc[[0]].assign(vin="NOT-A-VIN")
    pq.write_table(pa.Table.from_pandas(pd.concat([t, extra], ignore_index=True),
                                        schema=pq.read_schema(master), preserve_index=False),
                   master)
    ok(cli(["daily", "--date", days(work)[-1], "--skip-tests"], env))
    assert q(db, "select count(*) from dws.dws_vehicle") == [(10,)]
    assert q(db, "select is_vin_normalised, source_vin from ods.ods_vehicle_master where vin = ?",
             [vin]) == [(True, vin.lower())]
    assert q(db, "select source_vin, reason_code from dws.dws_vehicle_reject") == [
        ("NOT-A-VIN", "malformed_vin")]
    assert "malformed_vin" in ok(cli(["summary"], env)).stdout


# --- 7. the command line --------------------------------------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["daily", "--date", "03/03/2026"], "--date"),
    (["backfill", "--start", "2026-03-01", "--end", "2026-02-30"], "--end"),
    (["backfill", "--start", "2026-03-03", "--end", "2026-03-01"], "--end"),
    (["daily", "--date", "2026-03-03", "--lookback-days", "-5"], "--lookback-days"),
    (["build", "--dates", "2026-03-01,2026-3-2"], "--dates"),
])
def test_a_malformed_flag_is_a_usage_error_and_nothing_runs(work, args, flag):
    db = work / "wh.duckdb"
    before = fingerprint(db)
    p = cli(args, env_for(work))
    assert p.returncode == 2
    assert f"argument {flag}:" in p.stderr and "Traceback" not in p.stderr
    assert fingerprint(db) == before


def test_version():
    p = ok(cli(["--version"], dict(os.environ)))
    assert p.stdout.startswith("nev-battery ")


def test_a_second_run_is_told_who_holds_the_warehouse_and_kill_9_frees_it(work):
    env = env_for(work)
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time\nfrom nev_battery.warehouse import "
         "warehouse_lock\nwith warehouse_lock('build'):\n    print('locked', flush=True)\n"
         "    time.sleep(60)")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = fingerprint(work / "wh.duckdb")
        p = cli(["daily", "--date", days(work)[-1]], env)
        assert p.returncode == 1
        assert f"is in use by PID {holder.pid} (nev-battery build" in p.stderr
        assert "Traceback" not in p.stderr
        assert fingerprint(work / "wh.duckdb") == before
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        ok(cli(["summary"], env))  # the kernel released the lock with the process
    finally:
        holder.kill()
    # the lock is a real exclusive lock, not a file that merely exists
    fd = os.open(f"{work / 'wh.duckdb'}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


# --- 9. leftovers and noise -----------------------------------------------------------------------

def test_a_rerun_is_bit_identical_and_leaves_no_staging_tables(base, work):
    _, build = base
    db, env = work / "wh.duckdb", env_for(work)
    shutil.copy(db, work / "before.duckdb")
    ok(cli(["daily", "--date", days(work)[-1], "--lookback-days", "2", "--skip-tests"], env))
    assert [t for t in fingerprint(db) if "__dbt_tmp" in t] == []
    assert_unchanged(work / "before.duckdb", db, RUN_BOOKKEEPING)
    # the fleet is too small to train an SOH model: the build and the summary say so
    assert q(db, "select count(*) from ads.ads_vehicle_soh") == [(0,)]
    assert "no SOH model could be trained" in build.stdout
    assert "no SOH model could be trained" in ok(cli(["summary"], env)).stdout
