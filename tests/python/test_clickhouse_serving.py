"""The ClickHouse serving layer on chdb (target clickhouse_local, adapter plugin dbt-nev-chdb):
the ADS tables of a DuckDB build exported to the lake and published with dbt-clickhouse's own
materializations; re-publishing a month replaces it exactly, a failed publish changes nothing,
the TTL drops a month older than six months, and BI queries give the DuckDB ADS's answers.

The fleet spans the boundary between the two months before today's, so that month partitions
are exercised and every simulated day is inside the six months the TTL keeps, whatever the day
the test runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from test_warehouse import PROJECT, run_cli, wh_env

from nev_battery.lake import SERVED_TABLES
from nev_battery.simulate import SimConfig, simulate

TODAY = date.today()
M2_START = (TODAY.replace(day=1) - timedelta(days=1)).replace(day=1)  # last month
START = M2_START - timedelta(days=5)                                    # 5 days into the month before
M1, M2 = START.strftime("%Y-%m"), M2_START.strftime("%Y-%m")
FLEET = SimConfig(vehicles=8, days=10, seed=3, fault_share=0.3, start_date=START)
# an old month for the TTL test: month M1 of the fleet moved 11 months back, beyond the 6 kept
_old = START.year * 12 + START.month - 1 - 11
OLD = f"{_old // 12:04d}-{_old % 12 + 1:02d}"
SERVED = {t: t.removeprefix("ads_") for t in SERVED_TABLES}


def env_for(root: Path) -> dict:
    env = wh_env(root, "wh.duckdb")
    env.update(NEV_LAKE_ROOT=str(root / "lake"), NEV_CHDB_PATH=str(root / "chdb"))
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    simulate(FLEET, root / "landing", root / "truth")
    env = env_for(root)
    # a fleet this small trains the SOH model only with lower minimums (defaults 10 and 100)
    run_cli(["build", "--full-refresh", "--skip-tests", "--var", "soh_min_training_vehicles=4",
             "--var", "soh_min_training_observations=10"], env)
    p = run_cli(["publish", "--target", "clickhouse_local"], env)  # data tests included
    assert f"months {M1}, {M2}" in p.stdout
    return root, env


@contextmanager
def chdb_session(root: Path):
    """A chdb session on the served data directory; closed before the next dbt run (a data
    directory is held by one process at a time)."""
    from chdb.session import Session

    s = Session(str(root / "chdb"))
    try:
        yield s
    finally:
        s.close()


def ch(root: Path, sql: str) -> list[tuple]:
    from dbt.adapters.nevchdb.chdbclient import OUTPUT_SETTINGS, _parse

    with chdb_session(root) as s:
        # the BI users' profile on a server sets join_use_nulls too
        for k, v in {**OUTPUT_SETTINGS, "join_use_nulls": 1}.items():
            s.query(f"SET {k} = {v}")
        return _parse(s.query(sql, "JSONCompact").bytes()).result_set


def dq(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def norm(rows) -> list[tuple]:
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]


def staging_tables(root: Path) -> list[tuple]:
    return ch(root, "select name from system.tables where database = 'bi' and name like '%dbt%'")


def dbt_build(env: dict, select: str, months: str) -> subprocess.CompletedProcess:
    """dbt build of serving models straight, without publish's lake checks."""
    return subprocess.run([str(Path(sys.executable).parent / "dbt"), "build", "--target",
                           "clickhouse_local", "--profiles-dir", str(PROJECT), "--select", select,
                           "--vars", json.dumps({"publish_months": months})],
                          check=False, cwd=PROJECT, env=env, capture_output=True, text=True)


def snapshot(root: Path, table: str, order: str) -> list[tuple]:
    return ch(root, f"select * from bi.{table} order by {order}")


def test_publish_loads_every_ads_row_into_partitioned_ttl_tables(served):
    root, _ = served
    for ads, srv in SERVED.items():
        (n_ads,) = dq(root, f"select count(*) from ads.{ads}")[0]
        (n_srv,) = ch(root, f"select count() from bi.{srv}")[0]
        assert n_srv == n_ads, (srv, n_srv, n_ads)
    assert dq(root, "select count(*) from ads.ads_vehicle_daily_metrics")[0][0] == 80
    assert dq(root, "select count(*) from ads.ads_vehicle_soh")[0][0] > 0
    # MergeTree by month, sorted for the BI queries, six months of TTL
    (pk, sk, ddl) = ch(root, "select partition_key, sorting_key, create_table_query from "
                             "system.tables where database = 'bi' and name = 'vehicle_daily_metrics'")[0]
    assert pk in ("toYYYYMM(date)", "(toYYYYMM(date))") and sk == "vin, date", (pk, sk)
    assert "TTL date + toIntervalMonth(6)" in ddl
    parts = ch(root, "select distinct partition from system.parts where database = 'bi' and "
                     "table = 'vehicle_daily_metrics' and active order by 1")
    assert parts == [(M1.replace("-", ""),), (M2.replace("-", ""),)]
    # counts stay integers (DuckDB's sum() of integers is a 128-bit integer, which its Parquet
    # writer would turn into a double)
    assert ch(root, "select name, type from system.columns where database = 'bi' and table = "
                    "'fleet_daily_kpi' and name in ('active_vehicles', 'charge_count') "
                    "order by name") == [("active_vehicles", "Nullable(Int64)"),
                                         ("charge_count", "Nullable(Int64)")]
    # no staging table left behind
    assert staging_tables(root) == []


def _daily_key(ch_rows):
    return {(r[0], r[1]): r for r in ch_rows}


def test_republishing_a_month_replaces_exactly_that_month(served):
    root, env = served
    before = snapshot(root, "vehicle_daily_metrics", "vin, date")
    # the same month again: identical table, no duplicates
    run_cli(["publish", "--target", "clickhouse_local", "--months", M1], env)
    assert snapshot(root, "vehicle_daily_metrics", "vin, date") == before
    # a recomputed month in the lake: its new values, the other month untouched
    f = root / "lake" / "ads" / "ads_vehicle_daily_metrics" / f"month={M1}" / "data_0.parquet"
    with duckdb.connect() as con:
        con.execute(f"copy (select * replace (mileage_km + 1000 as mileage_km) from '{f}') "
                    f"to '{f}.new' (format parquet)")
    f.with_name("data_0.parquet.new").replace(f)
    run_cli(["publish", "--target", "clickhouse_local", "--months", M1, "--skip-export",
             "--select", "srv_vehicle_daily_metrics"], env)
    after = _daily_key(snapshot(root, "vehicle_daily_metrics", "vin, date"))
    old = _daily_key(before)
    assert after.keys() == old.keys()
    mileage = 2  # column position of mileage_km
    for k, row in after.items():
        month = k[1].strftime("%Y-%m")
        if month == M1:
            assert row[mileage] == pytest.approx(old[k][mileage] + 1000), k
        else:
            assert row == old[k], k
    # back to the warehouse's values (export included)
    run_cli(["publish", "--target", "clickhouse_local", "--months", M1], env)
    assert snapshot(root, "vehicle_daily_metrics", "vin, date") == before


def test_full_refresh_recreates_the_tables_from_every_month(served):
    root, env = served
    tables = {"vehicle_daily_metrics": "vin, date", "battery_warning": "warning_id",
              "soh_by_condition": "scope, scope_key, condition_type, condition_value"}
    before = {t: snapshot(root, t, o) for t, o in tables.items()}
    # with --months the new tables would hold those months alone
    with pytest.raises(AssertionError, match="takes no --months"):
        run_cli(["publish", "--target", "clickhouse_local", "--full-refresh", "--months", M1],
                env)
    run_cli(["publish", "--target", "clickhouse_local", "--full-refresh", "--skip-export"], env)
    assert {t: snapshot(root, t, o) for t, o in tables.items()} == before
    assert {M1.replace("-", ""), M2.replace("-", "")} <= {r[0] for r in ch(
        root, "select distinct partition from system.parts where active and database = 'bi' "
              "and table = 'vehicle_daily_metrics'")}
    assert staging_tables(root) == []


def test_republishing_a_month_the_lake_emptied_clears_it(served):
    """A month whose recomputed ADS has no rows (its lake folder holds an empty file) is emptied
    in the served table too: REPLACE PARTITION alone replaces only the months that have rows."""
    root, env = served
    by_month = ("select toYYYYMM(start_time), count() from bi.battery_warning "
                "group by 1 order by 1")
    before = dict(ch(root, by_month))
    m1 = int(M1.replace("-", ""))
    assert before.get(m1, 0) > 0, before
    f = root / "lake" / "ads" / "ads_battery_warning" / f"month={M1}" / "data_0.parquet"
    with duckdb.connect() as con:
        con.execute(f"copy (select * from '{f}' limit 0) to '{f}.new' (format parquet)")
    f.with_name("data_0.parquet.new").replace(f)
    run_cli(["publish", "--target", "clickhouse_local", "--months", M1, "--skip-export",
             "--select", "srv_battery_warning"], env)
    assert dict(ch(root, by_month)) == {m: n for m, n in before.items() if m != m1}
    # back to the warehouse's warnings (export included)
    run_cli(["publish", "--target", "clickhouse_local", "--months", M1,
             "--select", "srv_battery_warning"], env)
    assert dict(ch(root, by_month)) == before


def test_a_failed_publish_leaves_the_served_tables_as_they_were(served):
    root, env = served
    tables = {"vehicle_daily_metrics": "vin, date", "vehicle_soh": "vin, as_of_date",
              "fleet_daily_kpi": "vehicle_model, date"}
    before = {t: snapshot(root, t, o) for t, o in tables.items()}
    f = root / "lake" / "ads" / "ads_vehicle_soh" / f"month={M2}" / "data_0.parquet"
    good = f.read_bytes()
    f.write_bytes(good[: len(good) // 2])  # a truncated file
    try:
        with pytest.raises(AssertionError, match="srv_vehicle_soh"):
            run_cli(["publish", "--target", "clickhouse_local", "--months", f"{M1},{M2}",
                     "--skip-export"], env)
        for t, o in tables.items():
            assert snapshot(root, t, o) == before[t], t
        # a load failing after its staging table was created (a NULL key cannot be cast; dbt
        # straight, as the lake check would refuse the file's other schema)
        kept = f.with_name(f.name + ".good")
        kept.write_bytes(good)
        with duckdb.connect() as con:
            con.execute(f"copy (select * replace (case when as_of_date = (select max(as_of_date) "
                        f"from read_parquet('{kept}')) then null else vin end as vin) "
                        f"from read_parquet('{kept}')) to '{f}' (format parquet)")
        p = dbt_build(env, "srv_vehicle_soh", f"{M1},{M2}")
        assert p.returncode != 0 and "Cannot convert NULL value" in p.stdout, p.stdout[-3000:]
        for t, o in tables.items():
            assert snapshot(root, t, o) == before[t], t
        assert staging_tables(root) != []
    finally:
        f.write_bytes(good)
        f.with_name(f.name + ".good").unlink(missing_ok=True)
    # the next publish of the table drops the staging table the failed one left
    run_cli(["publish", "--target", "clickhouse_local", "--months", f"{M1},{M2}",
             "--skip-export", "--select", "srv_vehicle_soh"], env)
    assert staging_tables(root) == []
    assert snapshot(root, "vehicle_soh", tables["vehicle_soh"]) == before["vehicle_soh"]


def test_a_month_of_another_schema_is_refused_before_loading(served):
    """ClickHouse would convert a month whose column changed type to the first file's type,
    NULL where it cannot: publish refuses the months; a file lacking a column fails the load."""
    root, env = served
    tables = {"vehicle_soh": "vin, as_of_date", "vehicle_risk_daily": "vin, date"}
    before = {t: snapshot(root, t, o) for t, o in tables.items()}
    lake = root / "lake" / "ads"
    retyped = lake / "ads_vehicle_soh" / f"month={M2}" / "data_0.parquet"
    dropped = lake / "ads_vehicle_risk_daily" / f"month={M2}" / "data_0.parquet"
    good = {f: f.read_bytes() for f in (retyped, dropped)}
    try:
        with duckdb.connect() as con:
            con.execute(f"copy (select * replace (cast(soh_pct as varchar) || ' %' as soh_pct) "
                        f"from '{retyped}') to '{retyped}.new' (format parquet)")
            con.execute(f"copy (select * exclude (risk_score) from '{dropped}') "
                        f"to '{dropped}.new' (format parquet)")
        for f in good:
            f.with_name("data_0.parquet.new").replace(f)
        with pytest.raises(AssertionError, match="ads_vehicle_soh: .* has another schema .*"
                           "soh_pct: double vs string"):
            run_cli(["publish", "--target", "clickhouse_local", "--months", f"{M1},{M2}",
                     "--skip-export"], env)
        # straight through dbt (no lake check): the missing column fails the load
        p = dbt_build(env, "srv_vehicle_risk_daily", f"{M1},{M2}")
        assert p.returncode != 0 and "risk_score was not found" in p.stdout, p.stdout[-3000:]
        for t, o in tables.items():
            assert snapshot(root, t, o) == before[t], t
    finally:
        for f, data in good.items():
            f.write_bytes(data)


def test_lake_check_compares_names_and_types_not_nullability(tmp_path):
    """DuckDB writes a column without NULLs as `required`, so an empty month (its file from
    `limit 0`) and a full one differ in nullability alone: published together; a type differs:
    refused."""
    from nev_battery.lake import LakeError, check_lake

    with duckdb.connect() as con:
        con.execute("create table t as select 'V1' as vin, date '2026-10-01' as date, 1.5 as x")
        for t, col in SERVED_TABLES.items():
            d = tmp_path / "ads" / t
            if col is None:
                d.mkdir(parents=True)
                con.execute(f"copy (select * from t) to '{d / (t + '.parquet')}' (format parquet)")
                continue
            for m, sql in (("2026-09", "select * from t limit 0"), ("2026-10", "select * from t"),
                           ("2026-11", "select * replace (cast(x as varchar) as x) from t")):
                (d / f"month={m}").mkdir(parents=True)
                con.execute(f"copy ({sql}) to '{d / f'month={m}' / 'data_0.parquet'}' "
                            "(format parquet)")
    v = tmp_path / "ads" / "ads_vehicle_soh"
    nullable = [[f.nullable for f in pq.read_schema(v / f"month={m}" / "data_0.parquet")]
                for m in ("2026-09", "2026-10")]
    assert nullable[0] != nullable[1]
    check_lake(tmp_path, ["2026-09", "2026-10"])
    with pytest.raises(LakeError, match=r"month=2026-11/data_0.parquet has another schema than "
                       r".*month=2026-09/data_0.parquet \(x: decimal128\(2, 1\) vs string\)"):
        check_lake(tmp_path, ["2026-09", "2026-10", "2026-11"])


def test_ttl_drops_a_month_older_than_six_months_and_follows_the_var(served):
    root, env = served
    lake = root / "lake" / "ads"
    # an old month in the lake: month M1 of every partitioned table, a year earlier
    with duckdb.connect() as con:
        for ads, col in SERVED_TABLES.items():
            if col is None:
                continue
            src = lake / ads / f"month={M1}" / "data_0.parquet"
            dst = lake / ads / f"month={OLD}"
            dst.mkdir(exist_ok=True)
            # without the days that do not exist 11 months earlier (the 31st of October would
            # become the 30th of November, beside the 30th's own rows); a warning copied is
            # another warning, with its own id
            new_id = ", 'old-' || warning_id as warning_id" if ads == "ads_battery_warning" else ""
            con.execute(f"copy (select * replace ({col} - interval 11 month as {col}{new_id}) "
                        f"from '{src}' where day({col} - interval 11 month) = day({col})) "
                        f"to '{dst / 'data_0.parquet'}' (format parquet)")
        (n_old,) = con.execute(f"select count(*) from '{lake}/ads_vehicle_daily_metrics/"
                               f"month={OLD}/*.parquet'").fetchone()
    assert n_old > 0
    dated = {SERVED[ads]: col for ads, col in SERVED_TABLES.items() if col is not None}

    def by_month() -> dict[str, list[tuple]]:
        return {srv: ch(root, f"select toYYYYMM({col}), count() from bi.{srv} group by 1 "
                              "order by 1") for srv, col in dated.items()}

    recent = by_month()
    old_id = int(OLD.replace("-", ""))
    try:
        # published when already past the six months: not kept
        run_cli(["publish", "--target", "clickhouse_local", "--months", OLD, "--skip-export"], env)
        assert by_month() == recent
        # a publish with a 24-month TTL keeps the month, and the served tables take that TTL
        # (pre-hook serving_apply_ttl: dbt-clickhouse writes a TTL at CREATE TABLE only): a
        # merge or MATERIALIZE TTL then keeps the month too (it used to drop it, the tables
        # keeping their first six months)
        run_cli(["publish", "--target", "clickhouse_local", "--months", OLD, "--skip-export",
                 "--var", "serving_ttl_months=24"], env)
        for srv in dated:
            ch(root, f"alter table bi.{srv} materialize ttl settings mutations_sync = 2")
        aged = by_month()
        assert dict(aged["vehicle_daily_metrics"])[old_id] == n_old
        assert all(dict(aged[srv]).get(old_id, 0) > 0 for srv in
                   ("vehicle_risk_daily", "vehicle_soh", "fleet_daily_kpi"))
        for srv, col in dated.items():
            ddl = ch(root, f"select engine_full from system.tables where database = 'bi' "
                           f"and name = '{srv}'")[0][0]
            assert "+ toIntervalMonth(24)" in ddl.partition(" TTL ")[2], ddl
        # published again on the default TTL: six months again, and the old month leaves
        run_cli(["publish", "--target", "clickhouse_local", "--months", M2, "--skip-export"],
                env)
        for srv in dated:
            ch(root, f"alter table bi.{srv} materialize ttl settings mutations_sync = 2")
        # the old month gone, the recent months as they were
        assert by_month() == recent
        assert ch(root, "select count() from system.parts where active and database = 'bi' "
                        f"and partition = '{old_id}' and rows > 0") == [(0,)]
    finally:
        for ads, col in SERVED_TABLES.items():
            if col is not None:
                for p in (lake / ads / f"month={OLD}").glob("*"):
                    p.unlink()
                (lake / ads / f"month={OLD}").rmdir()


# BI queries in SQL that ClickHouse and DuckDB both read; {tables} are bi.* or ads.ads_*
BI_QUERIES = {
    # every vehicle on the latest SOH day with its warnings and highest risk since M1; vehicles
    # without a warning have NULLs (join_use_nulls = 1 on ClickHouse)
    "at_risk_vehicles": """
        select s.vin, s.soh_pct, w.warnings, w.top_level, r.max_risk, r.risk_days
        from (select vin, soh_pct from {vehicle_soh}
              where as_of_date = (select max(as_of_date) from {vehicle_soh})) as s
        left join (select vin, count(*) as warnings, max(level) as top_level
                   from {battery_warning} group by vin) as w on s.vin = w.vin
        left join (select vin, max(risk_score) as max_risk,
                          sum(case when max_level >= 1 then 1 else 0 end) as risk_days
                   from {vehicle_risk_daily} where date >= '{since}' group by vin) as r
            on s.vin = r.vin
        order by s.vin""",
    "soh_distribution_by_model": """
        select vehicle_model, count(*) as vehicles, avg(soh_pct) as soh_mean,
               min(soh_pct) as soh_min, max(soh_pct) as soh_max,
               sum(case when soh_pct < 90 then 1 else 0 end) as below_90,
               sum(case when soh_pct >= 90 and soh_pct < 95 then 1 else 0 end) as from_90_to_95,
               sum(case when soh_pct >= 95 then 1 else 0 end) as from_95
        from {vehicle_soh} where as_of_date = (select max(as_of_date) from {vehicle_soh})
        group by vehicle_model order by vehicle_model""",
    "daily_fleet_kpis": """
        select k.date, k.active_vehicles, k.mileage_km, k.charged_kwh, k.vehicles_with_alarm,
               m.vehicles, m.mileage_km as vehicle_mileage_km
        from {fleet_daily_kpi} as k
        inner join (select date, count(*) as vehicles, sum(mileage_km) as mileage_km
                    from {vehicle_daily_metrics} group by date) as m on k.date = m.date
        where k.vehicle_model = 'ALL' order by k.date""",
}


def bi_sql(name: str, engine: str) -> str:
    names = {srv: (f"bi.{srv}" if engine == "clickhouse" else f"ads.{ads}")
             for ads, srv in SERVED.items()}
    return BI_QUERIES[name].format(since=f"{M1}-01", **names)


@pytest.mark.parametrize("name", sorted(BI_QUERIES))
def test_bi_query_equals_duckdb_ads(served, name):
    root, _ = served
    got = norm(ch(root, bi_sql(name, "clickhouse")))
    want = norm(dq(root, bi_sql(name, "duckdb")))
    print(f"\n{name}: {json.dumps(want[:3], default=str)} ...")
    assert len(want) > 0
    assert got == want
    if name == "at_risk_vehicles":
        # the fleet has vehicles with warnings and vehicles without (NULL, not 0, on both)
        assert any(r[2] is None for r in got) and any(r[2] for r in got)
    if name == "daily_fleet_kpis":
        assert len(got) == FLEET.days and {str(r[0])[:7] for r in got} == {M1, M2}
        assert all(r[1] == r[5] for r in got)  # active vehicles = vehicles with metrics


def test_production_lake_addresses_compile_to_s3_and_hdfs(tmp_path):
    """On a server the lake is read at its own address (NEV_LAKE_URL / var lake_url) with s3()
    (credentials from a named collection) or hdfs(); the months named are the only folders read."""
    env = dict(os.environ, DBT_PROFILES_DIR=str(PROJECT), NEV_CHDB_PATH=str(tmp_path / "chdb"),
               DBT_TARGET_PATH=str(tmp_path / "target"), DBT_LOG_PATH=str(tmp_path / "logs"),
               NEV_LAKE_ROOT=str(tmp_path / "lake"), NEV_LAKE_URL="s3://bucket/nev/lake/")
    dbt = str(Path(sys.executable).parent / "dbt")
    compiled = tmp_path / "target" / "compiled" / "nev_battery" / "models" / "serving"

    def compile_(vars_: dict) -> dict[str, str]:
        p = subprocess.run([dbt, "compile", "--target", "clickhouse_local", "--select",
                            "srv_vehicle_soh", "srv_soh_watchlist", "--vars", json.dumps(vars_)],
                           check=False, cwd=PROJECT, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
        return {f.stem: f.read_text() for f in compiled.glob("*.sql")}

    sql = compile_({"lake_table_function": "s3", "lake_s3_named_collection": "nev_lake",
                    "publish_months": "2026-10,2026-09"})
    assert ("s3(nev_lake, url = 's3://bucket/nev/lake/ads/ads_vehicle_soh/month={2026-09,2026-10}"
            "/*.parquet', format = 'Parquet')") in sql["srv_vehicle_soh"]
    assert ("s3(nev_lake, url = 's3://bucket/nev/lake/ads/ads_soh_watchlist/*.parquet', "
            "format = 'Parquet')") in sql["srv_soh_watchlist"]
    env["NEV_LAKE_URL"] = "hdfs://namenode:8020/nev/lake"
    sql = compile_({"lake_table_function": "hdfs", "publish_months": "2026-10"})
    assert ("hdfs('hdfs://namenode:8020/nev/lake/ads/ads_vehicle_soh/month=2026-10/*.parquet', "
            "'Parquet')") in sql["srv_vehicle_soh"]


def test_the_server_target_takes_its_connection_and_database_from_the_environment(tmp_path):
    """The `clickhouse` target as a platform sets it: host, port, user, HTTPS and database from
    NEV_CLICKHOUSE_*; the serving models, and only they, go to that database. No server here:
    dbt debug prints the rendered profile, then fails to connect (a closed port on loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and closed once the block ends
    env = dict(os.environ, DBT_PROFILES_DIR=str(PROJECT), DBT_TARGET_PATH=str(tmp_path / "target"),
               DBT_LOG_PATH=str(tmp_path / "logs"), NEV_CLICKHOUSE_HOST="127.0.0.1",
               NEV_CLICKHOUSE_PORT=str(port), NEV_CLICKHOUSE_USER="bi_loader",
               NEV_CLICKHOUSE_SECURE="true", NEV_CLICKHOUSE_DATABASE="analytics")
    dbt = str(Path(sys.executable).parent / "dbt")
    p = subprocess.run([dbt, "debug", "--target", "clickhouse"], check=False, cwd=PROJECT,
                       env=env, capture_output=True, text=True, timeout=300)
    shown = {k.strip(): v.strip() for k, _, v in (line.split("  ", 1)[-1].partition(":")
                                                   for line in p.stdout.splitlines())}
    assert "Registered adapter: clickhouse=" in p.stdout, p.stdout[-3000:]
    assert {k: shown.get(k) for k in ("host", "port", "user", "secure", "schema", "driver")} == {
        "host": "127.0.0.1", "port": str(port), "user": "bi_loader", "secure": "True",
        "schema": "analytics", "driver": "http"}, p.stdout[-3000:]
    assert p.returncode != 0  # nothing listens there
    p = subprocess.run([dbt, "parse", "--target", "clickhouse"], check=False, cwd=PROJECT,
                       env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    nodes = json.loads((tmp_path / "target" / "manifest.json").read_text())["nodes"].values()
    enabled = {n["name"]: n["schema"] for n in nodes if n["resource_type"] == "model"}
    assert enabled == {f.stem: "analytics" for f in (PROJECT / "models" / "serving").glob("srv_*.sql")}


def test_sqlfluff_lint_serving_models(tmp_path):
    """The serving models lint clean as ClickHouse SQL, compiled on clickhouse_local (on the
    duckdb target of test_sqlfluff_lint_models they are disabled, and skipped)."""
    env = dict(os.environ, DBT_PROFILES_DIR=str(PROJECT), NEV_CHDB_PATH=str(tmp_path / "chdb"),
               DBT_TARGET_PATH=str(tmp_path / "target"), DBT_LOG_PATH=str(tmp_path / "logs"))
    p = subprocess.run([str(Path(sys.executable).parent / "sqlfluff"), "lint", "models/serving",
                        "--config", ".sqlfluff-clickhouse", "--disable-progress-bar",
                        "--format", "json"], check=False, cwd=PROJECT, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]
    assert "because it is disabled" not in p.stdout + p.stderr
    linted = {Path(r["filepath"]).name for r in json.loads(p.stdout)}
    assert linted == {f.name for f in (PROJECT / "models" / "serving").glob("srv_*.sql")}
