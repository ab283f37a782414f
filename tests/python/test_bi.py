"""The BI dashboards as a user sees them (bi/dashboards.yml, nev-battery bi up): a recent fleet
built on DuckDB and published to ClickHouse (chdb), Superset provisioned from the spec and
started once for the module, then

- every chart's query through Superset's API (/api/v1/chart/data) returns the numbers of the
  same query as plain SQL on the DuckDB ADS (the ADS datasets read the ClickHouse serving tables:
  the serving layer and Superset are checked at once; the data-quality ones read DuckDB);
- every dashboard opened in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright
  in the BI virtualenv, no browser download) loads with no failed request and no error panel,
  every chart in it; a screenshot of each goes to docs/img/bi/ for the README;
- the dbt exposures name every dashboard and the models its charts read.

Superset lives in the BI virtualenv (.venv-bi, `make bi-venv`, a prerequisite of `make test`)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import requests
import yaml
from test_warehouse import PROJECT, run_cli, wh_env

from nev_battery import bi
from nev_battery.simulate import SimConfig, simulate

END = date.today() - timedelta(days=1)
FLEET = SimConfig(vehicles=10, days=21, seed=11, fault_share=0.3, fast_ageing=2,
                  start_date=END - timedelta(days=20))
SHOTS = Path(os.environ.get("NEV_BI_SCREENSHOT_DIR", PROJECT / "docs" / "img" / "bi"))
SPEC = bi.load_spec()


def _need_bi_venv() -> Path:
    py = bi.bi_venv() / "bin" / "python"
    if not py.exists():
        pytest.fail(f"no BI virtualenv at {bi.bi_venv()}: `make bi-venv` creates it (make test "
                    "does)")
    if not Path(os.environ.get("NEV_CHROMIUM", "/usr/bin/chromium")).exists():
        pytest.fail("no /usr/bin/chromium: apt-get install -y chromium")
    return py


@pytest.fixture(scope="module")
def superset(tmp_path_factory):
    py = _need_bi_venv()
    root = tmp_path_factory.mktemp("bi")
    simulate(FLEET, root / "landing", root / "truth")
    env = wh_env(root, "wh.duckdb")
    env.update(NEV_LAKE_ROOT=str(root / "lake"), NEV_CHDB_PATH=str(root / "chdb"),
               NEV_SUPERSET_HOME=str(root / "superset"))
    run_cli(["build", "--full-refresh", "--skip-tests", "--var", "soh_min_training_vehicles=4",
             "--var", "soh_min_training_observations=10"], env)
    run_cli(["publish", "--target", "clickhouse_local", "--skip-tests"], env)
    p = run_cli(["bi", "up"], env)  # auto: the published ClickHouse tables
    assert "source clickhouse" in p.stdout, p.stdout
    home = root / "superset"
    srv = json.loads((home / "server.json").read_text())
    url = f"http://127.0.0.1:{srv['port']}"
    try:
        yield {"url": url, "root": root, "env": env, "py": py,
               "password": (home / "admin_password").read_text().strip()}
    finally:
        run_cli(["bi", "down"], env)


@pytest.fixture(scope="module")
def api(superset):
    s = requests.Session()
    r = s.post(f"{superset['url']}/api/v1/security/login", timeout=60,
               json={"username": bi.ADMIN, "password": superset["password"], "provider": "db",
                     "refresh": False})
    r.raise_for_status()
    s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    return s


def _value(v):
    """A cell as comparable: dates and times as epoch ms (Superset's JSON), floats as floats."""
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp() * 1000
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp() * 1000
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _key(row):
    return tuple((0, "") if v is None else ((1, v) if isinstance(v, str) else (2, round(v, 6)))
                 for v in row)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _duckdb_table(ds: dict) -> str:
    schema, table = bi.dataset_table(ds, "duckdb")
    sql = bi.dataset_sql(ds, "duckdb")
    return f"({sql}) as t" if sql else f"{schema}.{table}"


def test_every_chart_query_gives_the_ads_numbers(superset, api):
    url = superset["url"]
    charts = api.get(f"{url}/api/v1/chart/", params={"q": "(page_size:100)"}, timeout=60)
    by_title = {c["slice_name"]: c["id"] for c in charts.json()["result"]}
    assert set(by_title) >= {c["title"] for c in SPEC["charts"].values()}
    empty = []
    with duckdb.connect(str(superset["root"] / "wh.duckdb"), read_only=True) as con:
        for name, c in SPEC["charts"].items():
            cid = by_title[c["title"]]
            params = json.loads(api.get(f"{url}/api/v1/chart/{cid}", timeout=60)
                                .json()["result"]["params"])
            ds_id = int(params["datasource"].split("__")[0])
            r = api.post(f"{url}/api/v1/chart/data", json=bi.query_context(name, c, ds_id),
                         timeout=120)
            assert r.status_code == 200, f"{name}: {r.status_code} {r.text[:1000]}"
            res = r.json()["result"][0]
            got = [tuple(_value(v) for v in row.values()) for row in res["data"]]
            cur = con.execute(bi.expected_sql(c, _duckdb_table(SPEC["datasets"][c["dataset"]])))
            want = [tuple(_value(v) for v in row) for row in cur.fetchall()]
            assert len(got) == len(want), f"{name}: {len(got)} rows via Superset, {len(want)} in SQL"
            for g, w in zip(sorted(got, key=_key), sorted(want, key=_key), strict=True):
                assert len(g) == len(w) and all(map(_same, g, w)), f"{name}: {g} != {w}"
            if not got:
                empty.append(name)
    # the fleet has faults and fast-ageing packs; a landing-file problem it has not, and ten
    # vehicles are too few for an association at p < 0.0005 (the demo's fifty have some)
    assert set(empty) <= {"landing_file_problems", "fault_association"}, empty


def test_every_dashboard_loads_in_chromium_without_errors(superset):
    slugs = [d["slug"] for d in SPEC["dashboards"].values()]
    out = superset["root"] / "shots"
    p = subprocess.run([str(superset["py"]), str(bi.PROJECT_DIR / "src" / "nev_battery" /
                                                "superset_browser.py"),
                        superset["url"], bi.ADMIN, superset["password"], str(out), *slugs],
                       check=False, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    report = json.loads(p.stdout.strip().splitlines()[-1])
    for d in SPEC["dashboards"].values():
        rep = report[d["slug"]]
        assert rep["failed"] == [], (d["slug"], rep["failed"])
        assert rep["errors"] == [], (d["slug"], rep["errors"])
        assert rep["loading"] == 0, (d["slug"], "charts still loading")
        assert rep["charts"] == sum(len(row) for row in d["rows"]), (d["slug"], rep)
        assert Path(rep["screenshot"]).stat().st_size > 20_000
    SHOTS.mkdir(parents=True, exist_ok=True)
    for d in SPEC["dashboards"].values():
        shutil.copyfile(out / f"{d['slug']}.png", SHOTS / f"{d['slug']}.png")


def test_bi_up_again_switches_the_source_in_place(superset, api):
    """A second bi up (here onto the DuckDB warehouse) overwrites the same objects: as many
    charts, datasets and dashboards as before, the ADS datasets now on DuckDB, the numbers the
    same."""
    url = superset["url"]

    def count(kind: str) -> int:
        return api.get(f"{url}/api/v1/{kind}/", params={"q": "(page_size:1)"},
                       timeout=60).json()["count"]

    before = {k: count(k) for k in ("chart", "dataset", "dashboard")}
    p = run_cli(["bi", "up", "--source", "duckdb"], superset["env"])
    assert "source duckdb" in p.stdout
    srv = json.loads((superset["root"] / "superset" / "server.json").read_text())
    url = superset["url"] = f"http://127.0.0.1:{srv['port']}"
    r = api.post(f"{url}/api/v1/security/login", timeout=60,
                 json={"username": bi.ADMIN, "password": superset["password"], "provider": "db",
                       "refresh": False})
    api.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    assert {k: count(k) for k in ("chart", "dataset", "dashboard")} == before
    datasets = api.get(f"{url}/api/v1/dataset/", params={"q": "(page_size:100)"},
                       timeout=60).json()["result"]
    assert {d["database"]["database_name"] for d in datasets} == {bi.DATABASES["duckdb"]}
    assert before["dashboard"] == len(SPEC["dashboards"])
    assert before["chart"] == len(SPEC["charts"])


def test_each_dashboard_is_a_dbt_exposure_on_the_models_its_charts_read():
    exposures = {e["name"]: e for e in
                 yaml.safe_load((PROJECT / "models" / "exposures.yml").read_text())["exposures"]}
    for name, d in SPEC["dashboards"].items():
        e = exposures[f"superset_{name}"]
        assert e["type"] == "dashboard" and e["url"].endswith(f"/superset/dashboard/{d['slug']}/")
        assert e["owner"]["name"]
        tables = {SPEC["datasets"][SPEC["charts"][c]["dataset"]]["table"].split(".")[-1]
                  for row in d["rows"] for c in row}
        assert set(e["depends_on"]) == {f"ref('{t}')" for t in tables}, name


def test_bundle_is_stable_and_reads_the_chosen_source(tmp_path):
    a = bi.bundle("duckdb", tmp_path / "w.duckdb", tmp_path / "chdb")
    assert a == bi.bundle("duckdb", tmp_path / "w.duckdb", tmp_path / "chdb")  # idempotent
    ch = bi.bundle("clickhouse", tmp_path / "w.duckdb", tmp_path / "chdb")
    soh = yaml.safe_load(ch["datasets/vehicle_soh.yaml"])
    assert (soh["schema"], soh["table_name"]) == ("bi", "vehicle_soh")
    assert soh["uuid"] == yaml.safe_load(a["datasets/vehicle_soh.yaml"])["uuid"]
    db = yaml.safe_load(a["databases/duckdb.yaml"])
    assert db["extra"]["engine_params"]["connect_args"] == {"read_only": True}
    assert "interface=chdb" in yaml.safe_load(ch["databases/clickhouse.yaml"])["sqlalchemy_uri"]
    # the data-quality datasets read DuckDB whatever the source
    q = yaml.safe_load(ch["datasets/quarantine.yaml"])
    assert q["database_uuid"] == db["uuid"]
