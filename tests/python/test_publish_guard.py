"""A failed publish changes nothing (issue 13, case 8): files in the lake that the export did not
write are refused by name before anything is loaded; rows duplicated at a table's grain are
refused by the lake check and, when it is bypassed (dbt straight), by the serving models' own
check on their staging table before REPLACE PARTITION / EXCHANGE TABLES (macro serving_guard);
publish on a target that is not ClickHouse is refused before anything runs. In every case every
served table keeps its rows and content, checked by a checksum over all its columns."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from test_clickhouse_serving import M1, M2, SERVED, ch, dbt_build, served, staging_tables
from test_warehouse import CLI, PROJECT

from nev_battery.lake import LakeError, check_lake, lake_months

assert served  # the fixture, imported for this module: a fleet built on DuckDB and published

MONTHS = f"{M1},{M2}"


def publish(env: dict, *args: str) -> subprocess.CompletedProcess:
    """nev-battery publish, its failure returned (run_cli raises on one)."""
    return subprocess.run([*CLI, "publish", *args], check=False, cwd=PROJECT, env=env,
                          capture_output=True, text=True)


def served_state(root: Path) -> dict[str, tuple]:
    """Every served table: rows and a checksum of their content (every column, any order)."""
    return {srv: ch(root, f"select count(), sum(cityHash64(*)) from bi.{srv}")[0]
            for srv in SERVED.values()}


def rewrite(f: Path, select: str) -> None:
    """Replace a lake file by `select` over it ({f}: the file), as a re-export would."""
    with duckdb.connect() as con:
        src = f"read_parquet('{f}', hive_partitioning = false)"
        con.execute(f"copy ({select.format(f=src)}) to '{f}.new' (format parquet)")
    Path(f"{f}.new").replace(f)


@pytest.fixture
def lake_restored(served):
    """The lake as the fixture exported it, put back after the test."""
    root, _ = served
    lake = root / "lake"
    keep = root / "lake.kept"
    shutil.copytree(lake, keep)
    yield lake
    shutil.rmtree(lake)
    keep.rename(lake)


def test_a_stray_copy_in_the_lake_is_refused_by_name_and_changes_nothing(served, lake_restored):
    root, env = served
    before = served_state(root)
    assert before["vehicle_daily_metrics"][0] == 80
    month = lake_restored / "ads" / "ads_vehicle_daily_metrics" / f"month={M2}"
    shutil.copy(month / "data_0.parquet", month / "data_0 (copy).parquet")
    whole = lake_restored / "ads" / "ads_soh_by_condition"
    shutil.copy(whole / "ads_soh_by_condition.parquet", whole / "ads_soh_by_condition (copy).parquet")

    p = publish(env, "--target", "clickhouse_local", "--skip-export")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert served_state(root) == before
    # the folder and the file named, with the remedy; refused before dbt ran
    assert (f"ads/ads_vehicle_daily_metrics/month={M2}/: 'data_0 (copy).parquet': delete it, or "
            f"re-run nev-battery export --months {M2}") in p.stderr, p.stderr
    assert "ads/ads_soh_by_condition/: 'ads_soh_by_condition (copy).parquet': delete it" in p.stderr
    assert "files that nev-battery export did not write" in p.stderr
    assert "publishing" not in p.stdout

    # dbt straight (no lake check): the serving models refuse the doubled rows themselves, the
    # month table before REPLACE PARTITION, the whole table before EXCHANGE TABLES
    p = dbt_build(env, "tag:serving", MONTHS)
    assert p.returncode != 0
    assert served_state(root) == before
    assert staging_tables(root) == []
    assert "serving_guard: `bi`.`vehicle_daily_metrics` left unchanged" in p.stdout, p.stdout[-4000:]
    m2 = M2.replace("-", "")
    (n_m2,) = ch(root, f"select count() from bi.vehicle_daily_metrics where toYYYYMM(date) = {m2}")[0]
    assert f"{m2}: {2 * n_m2} loaded vs {n_m2} exported" in p.stdout, p.stdout[-4000:]
    assert "serving_guard: `bi`.`soh_by_condition` left unchanged" in p.stdout, p.stdout[-4000:]


def test_rows_duplicated_at_the_grain_are_refused_and_change_nothing(served, lake_restored):
    """A month file rewritten with duplicated rows passes the file-name check: the lake check
    refuses it by its grain, and so do the serving models when dbt runs straight."""
    root, env = served
    before = served_state(root)
    f = lake_restored / "ads" / "ads_vehicle_daily_metrics" / f"month={M1}" / "data_0.parquet"
    rewrite(f, "select * from {f} union all (select * from {f} order by vin, date limit 2)")

    p = publish(env, "--target", "clickhouse_local", "--skip-export")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert served_state(root) == before
    assert (f"ads_vehicle_daily_metrics: 2 key(s) of its grain (vin, date) occur more than once "
            f"in ads/ads_vehicle_daily_metrics/month={M1}/data_0.parquet") in p.stderr, p.stderr
    assert "publishing" not in p.stdout

    # bypassing the lake check: the staging table is refused before its partitions replace
    # the served ones (every other table is published again, with the same rows)
    p = dbt_build(env, "tag:serving", MONTHS)
    assert p.returncode != 0
    assert served_state(root) == before
    assert staging_tables(root) == []
    assert "serving_guard: `bi`.`vehicle_daily_metrics` left unchanged" in p.stdout, p.stdout[-4000:]
    assert "2 key(s) of the grain (vin, date) more than once" in p.stdout, p.stdout[-4000:]
    assert "PASS=" in p.stdout and "ERROR=1 " in p.stdout, p.stdout[-2000:]


def test_publish_on_a_target_that_is_not_clickhouse_is_refused_before_anything_runs(served):
    root, env = served
    db = Path(env["NEV_DUCKDB_PATH"])
    stamp = (db.stat().st_mtime_ns, hashlib.sha256(db.read_bytes()).hexdigest())
    before = served_state(root)
    for target, kind in (("duckdb", "duckdb"), ("spark", "nevspark")):
        p = publish(env, "--target", target)
        assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-3000:]
        assert (f"nev-battery publish: error: argument --target: '{target}' is a {kind} target, "
                "not a ClickHouse one") in p.stderr, p.stderr
        assert "clickhouse, clickhouse_local" in p.stderr and p.stdout == ""
    p = publish(env, "--target", "nope")
    assert p.returncode == 2 and "argument --target: no target 'nope'" in p.stderr, p.stderr
    assert (db.stat().st_mtime_ns, hashlib.sha256(db.read_bytes()).hexdigest()) == stamp
    assert served_state(root) == before


def test_lake_check_refuses_what_the_export_does_not_write(tmp_path):
    """Without ClickHouse: every kind of entry the export does not write, named with its folder;
    a copied month folder is no month."""
    from nev_battery.lake import SERVED_TABLES

    with duckdb.connect() as con:
        con.execute("create table t as select 'V1' as vin, date '2026-10-01' as date, 'x' as "
                    "window_type, date '2026-10-01' as window_start, 'ALL' as scope, 'ALL' as "
                    "scope_key, 'm' as vehicle_model, date '2026-10-01' as as_of_date, "
                    "date '2026-10-01' as month_start, '0-1' as age_band, 'w' as warning_id, "
                    "timestamp '2026-10-01 10:00' as start_time, 'a' as transaction_type, 'b' as "
                    "antecedent, 'c' as consequent, 'd' as condition_type, 'e' as condition_value")
        for t, col in SERVED_TABLES.items():
            d = tmp_path / "ads" / t / ("month=2026-10" if col else "")
            d.mkdir(parents=True)
            con.execute(f"copy t to '{d / ('data_0.parquet' if col else t + '.parquet')}' "
                        "(format parquet)")
    check_lake(tmp_path, ["2026-10"])
    vdm = tmp_path / "ads" / "ads_vehicle_daily_metrics"
    shutil.copytree(vdm / "month=2026-10", vdm / "month=2026-10 (copy)")
    (vdm / ".staging-0123").mkdir()
    (vdm / "month=2026-10" / "part-1.parquet").write_bytes(b"")
    (tmp_path / "ads" / "ads_soh_watchlist" / "notes.txt").write_text("")
    assert lake_months(tmp_path) == ["2026-10"]
    with pytest.raises(LakeError) as e:
        check_lake(tmp_path, ["2026-10"])
    lines = str(e.value).splitlines()[1:]
    assert lines == [
        ("  ads/ads_vehicle_daily_metrics/: '.staging-0123': an export is writing this table, or "
         "was killed: publish after it ends"),
        "  ads/ads_vehicle_daily_metrics/: 'month=2026-10 (copy)': delete it",
        ("  ads/ads_vehicle_daily_metrics/month=2026-10/: 'part-1.parquet': delete it, or re-run "
         "nev-battery export --months 2026-10 (rewrites the folder)"),
        "  ads/ads_soh_watchlist/: 'notes.txt': delete it"], str(e.value)
