"""Rules as data (issue 18): the seeds or a real MySQL/MariaDB server, validated before any model
runs, the rules version on every warning row, the history of rule changes, push / pull."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from nev_battery import rules
from nev_battery.simulate import SimConfig, simulate

PROJECT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "nev_battery.cli"]
FLEET = SimConfig(vehicles=6, days=6, seed=31, fault_share=0.5)


def cli(args: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([*CLI, *args], check=False, cwd=PROJECT, env=env, capture_output=True,
                       text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"nev-battery {' '.join(args)} exited {p.returncode}:\n"
                             f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def env_for(root: Path, db: str, rules_url: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop(rules.RULES_URL_ENV, None)
    env.update(NEV_LANDING_ROOT=str(root / "landing"), NEV_DUCKDB_PATH=str(root / db),
               DBT_TARGET_PATH=str(root / f"target-{db}"), DBT_LOG_PATH=str(root / "logs"),
               DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    if rules_url:
        env[rules.RULES_URL_ENV] = rules_url
    return env


def tables_of(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [f"{s}.{t}" for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where schema_name in ('ods', 'dws', 'dwd', 'ads') order by 1, 2").fetchall()]


def table_diffs(db_a: Path, db_b: Path, skip_columns: dict[str, set[str]]) -> dict[str, tuple]:
    """{table: (rows, a-b, b-a)} of the tables that differ, row for row, values included."""
    out = {}
    with duckdb.connect() as con:
        con.execute(f"attach '{db_a}' as a (read_only)")
        con.execute(f"attach '{db_b}' as b (read_only)")
        for table in tables_of(db_a):
            s, t = table.split(".")
            cols = [r[0] for r in con.execute(
                "select column_name from duckdb_columns() where database_name = 'a' and "
                "schema_name = ? and table_name = ? order by column_index", [s, t]).fetchall()]
            sel = ", ".join(f'"{c}"' for c in cols if c not in skip_columns.get(table, set()))
            n = con.execute(f"select count(*) from a.{table}").fetchall()[0][0]
            ab = con.execute(f"select count(*) from (select {sel} from a.{table} except all "
                             f"select {sel} from b.{table})").fetchall()[0][0]
            ba = con.execute(f"select count(*) from (select {sel} from b.{table} except all "
                             f"select {sel} from a.{table})").fetchall()[0][0]
            if ab or ba:
                out[table] = (n, ab, ba)
    return out


# --- the rule tables and their validation -----------------------------------------------------

def test_detector_settings_seed_equals_the_dbt_project_defaults():
    """A plain dbt run reads the vars' defaults, nev-battery passes the seed's values: equal."""
    defaults = rules.known_settings()
    seed = {r["setting"]: r["value"] for r in rules.load_seeds().tables["detector_settings"]}
    assert set(seed) == set(defaults)
    assert {k: float(v) for k, v in defaults.items()} == seed


def test_known_metrics_are_the_macros():
    text = (PROJECT / "macros" / "warning_rules.sql").read_text()
    body = text[text.index("macro warning_rule_metrics"):]
    body = body[:body.index("endmacro")]
    assert set(re.findall(r"'([a-z_0-9]+)':", body)) == set(rules.METRICS)


def test_seed_column_types_are_the_rules_schema():
    seeds = yaml.safe_load((PROJECT / "seeds" / "_seeds.yml").read_text())["seeds"]
    names = {"string": "s", "double": "d", "integer": "i", "boolean": "b"}
    # the rule seeds (other seeds, such as the cells' OCV curve, are not rules)
    rule_seeds = [s for s in seeds if s["name"] in rules.TABLES]
    assert {s["name"] for s in rule_seeds} == set(rules.TABLES)
    for s in rule_seeds:
        types = {c: names[t] for c, t in s["config"]["column_types"].items()}
        assert types == rules.TABLES[s["name"]], s["name"]


def _write_rules(folder: Path, edit) -> Path:
    shutil.copytree(PROJECT / "seeds", folder)
    path = folder / "warning_rules.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    edit(rows)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rules.TABLES["warning_rules"]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return folder


def test_bad_rule_rows_are_refused_by_name(tmp_path):
    """Unknown metric or operator, a level outside 1-3, a threshold that is no number, a
    duplicate id: each named (row, id, column), exit code 2."""
    def edit(rows):
        by_id = {r["rule_id"]: r for r in rows}
        by_id["TD1"]["metric"] = "temp_dif_c"
        by_id["TD2"]["operator"] = "=>"
        by_id["HT1"]["level"] = "4"
        by_id["HT2"]["threshold"] = "58 degC"
        rows.append(dict(by_id["VS1"]))

    folder = _write_rules(tmp_path / "seeds", edit)
    with pytest.raises(rules.RulesError) as e:
        rules.load_seeds(folder)
    msg = str(e.value)
    assert "(rule_id 'TD1'): column metric: unknown metric 'temp_dif_c'" in msg
    assert "(rule_id 'TD2'): column operator: unknown operator '=>'" in msg
    assert "(rule_id 'HT1'): column level: 4 is outside 1-3" in msg
    assert "(rule_id 'HT2'): column threshold is '58 degC', not a number" in msg
    assert "(rule_id 'VS1'): duplicate rule_id 'VS1'" in msg
    p = cli(["rules", "check", "--seeds", "--dir", str(folder)], dict(os.environ), check=False)
    assert p.returncode == 2, p.stderr
    assert "unknown metric 'temp_dif_c'" in p.stderr and "Correct the rows" in p.stderr


def test_rules_version_is_a_content_hash(tmp_path):
    base = rules.load_seeds()
    same = rules.load_seeds(_write_rules(tmp_path / "a", lambda rows: rows.reverse()))
    assert same.version == base.version  # row order is not content

    def lower(rows):
        next(r for r in rows if r["rule_id"] == "TD1")["threshold"] = "14"

    assert rules.load_seeds(_write_rules(tmp_path / "b", lower)).version != base.version
    assert base.with_overrides({"detector_cell_l2_mv": 30}).version != base.version


# --- MySQL / MariaDB --------------------------------------------------------------------------

def test_push_then_pull_gives_the_seeds_back(rules_db, tmp_path):
    env = dict(os.environ)
    p = cli(["rules", "push", "--url", rules_db], env)
    assert "warning_rules 21 rows" in p.stdout
    cli(["rules", "pull", "--url", rules_db, "--dir", str(tmp_path / "pulled")], env)
    pulled = rules.load_seeds(tmp_path / "pulled")
    assert pulled.tables == rules.load_seeds().tables
    assert pulled.version == rules.load_mysql(rules_db).version == rules.load_seeds().version
    p = cli(["rules", "check", "--url", rules_db], env)
    assert f"version {pulled.version}" in p.stdout


def test_a_bad_row_in_mysql_stops_the_run_before_any_model(rules_db, tmp_path):
    rules.push_mysql(rules_db, rules.load_seeds())
    con = rules.connect_mysql(rules_db)
    with con.cursor() as cur:
        cur.execute("update warning_rules set level = 5 where rule_id = 'IN2'")
    con.commit()
    con.close()
    root = tmp_path
    simulate(SimConfig(vehicles=2, days=1, seed=3), root / "landing", root / "truth")
    p = cli(["build"], env_for(root, "wh.duckdb", rules_db), check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "warning_rules row" in p.stderr and "(rule_id 'IN2'): column level: 5 is outside 1-3" in p.stderr
    assert not (root / "wh.duckdb").exists()  # nothing ran


def test_unreachable_rules_database_is_refused(tmp_path):
    root = tmp_path
    simulate(SimConfig(vehicles=2, days=1, seed=3), root / "landing", root / "truth")
    p = cli(["build"], env_for(root, "wh.duckdb", "mysql://root@127.0.0.1:1/nope"), check=False)
    assert p.returncode == 2
    assert "cannot read the rules from mysql://root@127.0.0.1:1/nope" in p.stderr


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory, mysql_server):
    """The same fleet built on the seeds and on the same rules in MySQL."""
    import uuid

    root = tmp_path_factory.mktemp("rules")
    simulate(FLEET, root / "landing", root / "truth")
    name = f"nev_rules_test_{uuid.uuid4().hex[:12]}"
    con = rules.connect_mysql(mysql_server)
    with con.cursor() as cur:
        cur.execute(f"create database `{name}`")
    con.close()
    url = re.sub(r"/[^/]*$", f"/{name}", mysql_server)
    rules.push_mysql(url, rules.load_seeds())
    cli(["build", "--full-refresh", "--skip-tests"], env_for(root, "seed.duckdb"))
    # with the data tests: the snapshot of MySQL passes the models' tests too
    cli(["build", "--full-refresh"], env_for(root, "mysql.duckdb", url))
    yield root, url
    con = rules.connect_mysql(mysql_server)
    with con.cursor() as cur:
        cur.execute(f"drop database if exists `{name}`")
    con.close()


def _q(db: Path, sql: str, params=None):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_seed_and_mysql_give_the_same_warehouse_row_for_row(two_builds):
    root, _ = two_builds
    version = rules.load_seeds().version
    # the history records when each build saw the rules, nothing else differs
    diffs = table_diffs(root / "seed.duckdb", root / "mysql.duckdb",
                        {"dws.dws_rules_history": {"detected_at"}})
    assert diffs == {}
    assert "dws.dws_rules_history" in tables_of(root / "seed.duckdb")
    n_warn = _q(root / "mysql.duckdb", "select count(*) from ads.ads_battery_warning")[0][0]
    assert n_warn > 0
    for table in ("ads.ads_battery_warning", "dwd.dwd_rule_episode",
                  "dwd.dwd_rule_episode_calibrated", "dwd.dwd_battery_detector_daily"):
        # (a small fleet may have no threshold-rule episode: empty, or the version)
        assert set(_q(root / "mysql.duckdb", f"select distinct rules_version from {table}")
                   ) <= {(version,)}, table
    assert _q(root / "mysql.duckdb", "select distinct rules_version from "
              "ads.ads_battery_warning") == [(version,)]


def test_plain_dbt_computes_the_same_rules_version(two_builds):
    """Without nev-battery (no var rules_version) the macro hashes the seeds as rules.py does."""
    root, _ = two_builds
    env = env_for(root, "seed.duckdb")
    # the venv's dbt (make test runs the venv's pytest without the venv on PATH)
    dbt = str(Path(sys.executable).parent / "dbt")
    p = subprocess.run([dbt, "run-operation", "print_rules_version", "--project-dir",
                        str(PROJECT), "--profiles-dir", str(PROJECT)], env=env, cwd=PROJECT,
                       capture_output=True, text=True, check=True)
    assert rules.load_seeds().version in p.stdout.splitlines()[-1]


def test_a_rule_changed_in_mysql_changes_the_next_daily_run_and_is_recorded(two_builds):
    root, url = two_builds
    db = root / "mysql.duckdb"
    last = str(_q(db, "select max(collect_date) from dws.dws_realtime_frame")[0][0])
    before_history = _q(db, "select * from dws.dws_rules_history")
    old_version = rules.load_mysql(url).version
    episodes = "select count(*) from dwd.dwd_rule_episode where rule_id = 'TD1' and start_date = ?"
    td1_before = _q(db, episodes, [last])[0][0]
    warnings_before = _q(db, "select * exclude (rules_version) from ads.ads_battery_warning")

    con = rules.connect_mysql(url)
    with con.cursor() as cur:
        cur.execute("update warning_rules set threshold = 4 where rule_id = 'TD1'")
    con.commit()
    con.close()
    new_version = rules.load_mysql(url).version
    assert new_version != old_version
    p = cli(["daily", "--date", last, "--skip-tests"], env_for(root, "mysql.duckdb", url))
    assert f"version {new_version}" in p.stdout

    # the warnings changed, and the new rows carry the new version
    assert _q(db, episodes, [last])[0][0] > td1_before
    assert _q(db, "select distinct rules_version from dwd.dwd_rule_episode where start_date = ?",
              [last]) == [(new_version,)]
    # days not rebuilt (before the run date's look-back of dwd_lookback_days = 1) keep the
    # rules they were found with
    assert set(_q(db, "select distinct rules_version from dwd.dwd_rule_episode "
                      "where start_date < cast(? as date) - 1", [last])) <= {(old_version,)}
    warnings_after = _q(db, "select * exclude (rules_version) from ads.ads_battery_warning")
    assert set(warnings_after) != set(warnings_before)
    new_rows = _q(db, "select count(*) from ads.ads_battery_warning where rules_version = ?",
                  [new_version])[0][0]
    assert new_rows > 0
    # the change is recorded: rule, column, old and new value, the versions, when
    history = _q(db, "select * from dws.dws_rules_history")
    assert set(before_history) <= set(history)  # it never shrinks
    change = _q(db, """select table_name, rule_key, column_name, change_type, old_value,
                              new_value, previous_rules_version, rules_version
                       from dws.dws_rules_history where detected_at = (select max(detected_at)
                       from dws.dws_rules_history)""")
    assert change == [("warning_rules", "TD1", "threshold", "changed", "15", "4", old_version,
                       new_version)]
    # a full refresh keeps the history (full_refresh=false)
    cli(["build", "--full-refresh", "--skip-tests", "--select", "dws_rules_history"],
        env_for(root, "mysql.duckdb", url))
    assert set(history) <= set(_q(db, "select * from dws.dws_rules_history"))
