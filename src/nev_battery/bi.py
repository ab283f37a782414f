"""BI dashboards as code: Apache Superset over the ADS (``nev-battery bi up`` / ``bi down``).

The dashboards, charts and datasets are declared in bi/dashboards.yml. ``bi up``:

1. creates the BI virtualenv .venv-bi from requirements-bi.lock on first use (Superset is ~0.9
   GB of dependencies the warehouse does not need; the main .venv stays lean);
2. writes Superset's config under warehouse/superset/ (env NEV_SUPERSET_HOME): metadata in
   SQLite there, a SECRET_KEY and an admin password generated once and kept there (never in
   the repository), the server bound to 127.0.0.1;
3. turns the spec into a Superset import bundle (stable UUIDs from the names: every import
   overwrites the same objects, so ``bi up`` is idempotent) and imports it, databases, datasets,
   charts and dashboards each with overwrite (Superset's dashboard import alone would keep
   outdated charts);
4. starts Superset (gunicorn) on a free port of 127.0.0.1 in the background.

The ADS datasets read either the DuckDB warehouse (opened read-only: duckdb-engine connect_args
read_only) or the ClickHouse serving tables in the chdb directory (clickhouse-connect,
interface=chdb, in-process): ``--source duckdb|clickhouse``, default clickhouse once published.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
SPEC_PATH = PROJECT_DIR / "bi" / "dashboards.yml"
LOCK_PATH = PROJECT_DIR / "requirements-bi.lock"
PROVISION_SCRIPT = Path(__file__).resolve().parent / "superset_provision.py"
NAMESPACE = uuid.UUID("6f1c2b0e-5d6a-4c53-9a41-0e2b7f3d1c16")
ADMIN = "admin"
DATABASES = {"duckdb": "NEV warehouse (DuckDB, read-only)",
             "clickhouse": "NEV serving (ClickHouse on chdb)"}
VIZ = {"bar": "echarts_timeseries_bar", "line": "echarts_timeseries_line", "table": "table"}
AGGREGATES = {"avg": "AVG", "min": "MIN", "max": "MAX", "sum": "SUM", "count": "COUNT",
              "count_distinct": "COUNT_DISTINCT"}
ROW_LIMIT = 10_000


class BIError(RuntimeError):
    """bi up/down cannot go on (printed without a traceback)."""


# --- locations -------------------------------------------------------------------------------

def bi_venv() -> Path:
    return Path(os.environ.get("NEV_BI_VENV", PROJECT_DIR / ".venv-bi"))


def superset_home() -> Path:
    return Path(os.environ.get("NEV_SUPERSET_HOME", PROJECT_DIR / "warehouse" / "superset"))


def duckdb_file() -> Path:
    from .warehouse import duckdb_path

    return duckdb_path().resolve()


def chdb_dir() -> Path:
    p = Path(os.environ.get("NEV_CHDB_PATH", "warehouse/chdb"))
    return (p if p.is_absolute() else PROJECT_DIR / p).resolve()


def served(chdb: Path | None = None) -> bool:
    """True when the chdb directory holds the served tables (a publish to clickhouse_local)."""
    d = (chdb or chdb_dir()) / "store"
    return d.is_dir() and any(d.iterdir()) and (
        (chdb or chdb_dir()) / "metadata" / "bi").exists()


# --- the BI virtualenv -----------------------------------------------------------------------

def _lock_digest() -> str:
    return hashlib.sha256(LOCK_PATH.read_bytes()).hexdigest()[:16]


def ensure_venv(log=print) -> Path:
    """.venv-bi with the pinned packages of requirements-bi.lock; created (or refreshed when the
    lock changed) on first use. Returns its python."""
    venv = bi_venv()
    py = venv / "bin" / "python"
    stamp = venv / f".installed-{_lock_digest()}"
    if stamp.exists():
        return py
    t0 = time.perf_counter()
    log(f"creating the BI virtualenv {venv} from {LOCK_PATH.name} (once; about 3 minutes)")
    if not py.exists():
        base = shutil.which("python3.11") or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "--no-deps", "-r", str(LOCK_PATH)], check=True)
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    log(f"BI virtualenv ready in {time.perf_counter() - t0:.0f} s")
    return py


# --- the spec and the Superset bundle --------------------------------------------------------

def load_spec(path: Path = SPEC_PATH) -> dict:
    return yaml.safe_load(path.read_text())


def uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"nev-battery/{kind}/{name}"))


def dataset_table(ds: dict, source: str) -> tuple[str, str]:
    """(schema, table) a dataset reads: ads.ads_x on DuckDB, bi.x on ClickHouse."""
    t = ds["table"]
    if "." in t:
        schema, _, name = t.partition(".")
        return schema, name
    if source == "clickhouse" and not ds.get("warehouse_only"):
        return "bi", t.removeprefix("ads_")
    return "ads", t


def dataset_source(ds: dict, source: str) -> str:
    return "duckdb" if ds.get("warehouse_only") else source


def dataset_sql(ds: dict, source: str) -> str | None:
    if not ds.get("sql"):
        return None
    schema, table = dataset_table(ds, source)
    return ds["sql"].format(table=f"{schema}.{table}")


def metric_spec(m: dict) -> tuple[str, str | None, str]:
    """(aggregate key, column, label) of a metric entry such as {avg: soh_pct, label: ...}."""
    (agg, col), = ((k, v) for k, v in m.items() if k != "label")
    return agg, col, m.get("label") or f"{agg}({col})"


def _adhoc_metric(m: dict) -> dict:
    agg, col, label = metric_spec(m)
    return {"expressionType": "SIMPLE", "column": {"column_name": col},
            "aggregate": AGGREGATES[agg], "label": label, "hasCustomLabel": True,
            "optionName": "metric_" + hashlib.md5(label.encode()).hexdigest()[:12]}


OPS = {"=": "==", "==": "==", "!=": "!=", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}


def _adhoc_filter(f: list) -> dict:
    col, op, val = f
    return {"expressionType": "SIMPLE", "clause": "WHERE", "subject": col,
            "operator": OPS[op], "comparator": val,
            "filterOptionName": "filter_" + hashlib.md5(f"{col}{op}{val}".encode()).hexdigest()[:12]}


def is_temporal(col: str) -> bool:
    return col in {"date", "as_of_date", "start_time", "collect_date", "month_start",
                   "window_start"}


def chart_params(name: str, c: dict, dataset_id: str | int) -> dict:
    """Superset's form data of a chart (what the explore view saves)."""
    base = {"datasource": f"{dataset_id}__table", "viz_type": VIZ[c["viz"]],
            "adhoc_filters": [_adhoc_filter(f) for f in c.get("filters", [])],
            "row_limit": ROW_LIMIT, "extra_form_data": {}, "dashboards": []}
    if c["viz"] == "table":
        fmt = {col: {"d3NumberFormat": ",.2f"} for col in c.get("decimals", [])}
        return {**base, "query_mode": "raw", "all_columns": c["raw"], "column_config": fmt,
                "order_by_cols": [json.dumps([col, d == "asc"]) for col, d in c.get("order", [])],
                "server_pagination": False, "server_page_length": 10, "page_length": 10,
                "include_search": True, "show_cell_bars": False, "table_timestamp_format": "smart_date",
                "allow_render_html": False}
    params = {**base, "x_axis": c["x"], "metrics": [_adhoc_metric(m) for m in c["metrics"]],
              "groupby": c.get("groupby", []), "order_desc": True, "truncate_metric": True,
              "show_legend": True, "legendType": "scroll", "legendOrientation": "top",
              "rich_tooltip": True, "x_axis_sort_asc": True, "x_axis_sort_series": "name",
              "x_axis_sort_series_ascending": True, "y_axis_format": "SMART_NUMBER",
              "orientation": "vertical", "comparison_type": "values", "annotation_layers": [],
              "forecastPeriods": 10, "forecastInterval": 0.8, "x_axis_title_margin": 15,
              "y_axis_title_margin": 15, "y_axis_title_position": "Left",
              "sort_series_type": "sum", "color_scheme": "supersetColors",
              "only_total": True, "zoomable": False}
    if is_temporal(c["x"]):
        params["time_grain_sqla"] = "P1D"
    if c["viz"] == "bar":
        # stacked when the groups add up (counts, sums); side by side otherwise (medians)
        params["stack"] = "Stack" if c.get("groupby") and c.get("stack", True) else None
        if c.get("horizontal"):  # long category names (reason codes)
            params["orientation"] = "horizontal"
    else:
        # the y axis fitted to the data: an SOH interval is a few points wide
        params.update(markerEnabled=True, markerSize=4, seriesType="line", truncateYAxis=True,
                      y_axis_bounds=[None, None])
    return params


def query_context(name: str, c: dict, dataset_id: int) -> dict:
    """The query a chart runs, as /api/v1/chart/data takes it, in long form (one row per x and
    group, no pivot: what the chart plots, before the chart's own reshaping)."""
    filters = [{"col": col, "op": OPS[op], "val": val} for col, op, val in c.get("filters", [])]
    q: dict = {"filters": filters, "extras": {"having": "", "where": ""},
               "applied_time_extras": {}, "row_limit": ROW_LIMIT, "series_limit": 0,
               "order_desc": True, "url_params": {}, "custom_params": {},
               "custom_form_data": {}, "post_processing": [], "time_range": "No filter"}
    if c["viz"] == "table":
        q.update(columns=list(c["raw"]), metrics=[],
                 orderby=[[col, d == "asc"] for col, d in c.get("order", [])])
    else:
        x = c["x"]
        xcol: dict | str = ({"timeGrain": "P1D", "columnType": "BASE_AXIS", "sqlExpression": x,
                             "label": x, "expressionType": "SQL"} if is_temporal(x) else x)
        metrics = [_adhoc_metric(m) for m in c["metrics"]]
        q.update(columns=[xcol, *c.get("groupby", [])], metrics=metrics,
                 orderby=[[metrics[0], False]])
        if is_temporal(x):
            q["extras"]["time_grain_sqla"] = "P1D"
    return {"datasource": {"id": dataset_id, "type": "table"}, "force": False, "queries": [q],
            "form_data": chart_params(name, c, dataset_id), "result_format": "json",
            "result_type": "full"}


def expected_sql(c: dict, table: str) -> str:
    """The same query as plain SQL on a DuckDB table (what the API test compares with)."""
    where = " and ".join(f"{col} {'=' if op in ('=', '==') else op} "
                         + (f"'{val}'" if isinstance(val, str) else str(val))
                         for col, op, val in c.get("filters", [])) or "true"
    if c["viz"] == "table":
        order = ", ".join(f"{col} {d}" for col, d in c.get("order", []))
        return (f"select {', '.join(c['raw'])} from {table} where {where}"
                + (f" order by {order}" if order else "") + f" limit {ROW_LIMIT}")
    x = c["x"]
    xs = f"date_trunc('day', {x})" if is_temporal(x) else x
    aggs = []
    for m in c["metrics"]:
        agg, col, _ = metric_spec(m)
        aggs.append(f"count(distinct {col})" if agg == "count_distinct" else f"{agg}({col})")
    keys = [xs, *c.get("groupby", [])]
    return (f"select {', '.join(keys)}, {', '.join(aggs)} from {table} where {where} "
            f"group by all")


def _position(dash: dict, chart_ids: dict[str, int], spec: dict) -> dict:
    pos: dict = {"DASHBOARD_VERSION_KEY": "v2",
                 "ROOT_ID": {"children": ["GRID_ID"], "id": "ROOT_ID", "type": "ROOT"},
                 "HEADER_ID": {"id": "HEADER_ID", "meta": {"text": dash["title"]},
                               "type": "HEADER"},
                 "GRID_ID": {"children": [], "id": "GRID_ID", "parents": ["ROOT_ID"],
                             "type": "GRID"}}
    for r, row in enumerate(dash["rows"]):
        row_id = f"ROW-{r}"
        pos["GRID_ID"]["children"].append(row_id)
        pos[row_id] = {"children": [], "id": row_id, "parents": ["ROOT_ID", "GRID_ID"],
                       "type": "ROW", "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for name in row:
            cid = f"CHART-{name}"
            pos[row_id]["children"].append(cid)
            tall = spec["charts"][name]["viz"] == "table"
            pos[cid] = {"children": [], "id": cid, "parents": ["ROOT_ID", "GRID_ID", row_id],
                        "type": "CHART",
                        "meta": {"chartId": chart_ids[name], "height": 62 if tall else 52,
                                 "sliceName": spec["charts"][name]["title"],
                                 "uuid": uid("chart", name), "width": 12 // len(row)}}
    return pos


def _native_filters(dash: dict, chart_ids: dict[str, int],
                    defaults: dict[str, str] | None = None) -> list[dict]:
    out = []
    in_dash = [n for row in dash["rows"] for n in row]
    for f in dash.get("filters", []):
        fid = "NATIVE_FILTER-" + hashlib.md5(f"{dash['slug']}{f['column']}".encode()).hexdigest()[:10]
        out.append({
            "id": fid, "name": f["label"], "filterType": "filter_select", "type": "NATIVE_FILTER",
            "targets": [{"column": {"name": f["column"]},
                         "datasetUuid": uid("dataset", f["dataset"])}],
            "controlValues": {"enableEmptyFilter": False, "defaultToFirstItem": False,
                              "multiSelect": False, "searchAllOptions": False,
                              "inverseSelection": False, "sortAscending": True},
            "defaultDataMask": _default_mask(f["column"], (defaults or {}).get(f["column"])),
            "cascadeParentIds": [], "description": "",
            "scope": {"rootPath": ["ROOT_ID"],
                      "excluded": [chart_ids[n] for n in in_dash if n not in f["charts"]]},
        })
    return out


def _default_mask(column: str, value: str | None) -> dict:
    if value is None:
        return {"extraFormData": {}, "filterState": {}, "ownState": {}}
    return {"extraFormData": {"filters": [{"col": column, "op": "IN", "val": [value]}]},
            "filterState": {"value": [value], "label": value}, "ownState": {}}


def default_vin(duckdb: Path) -> str | None:
    """The vehicle a dashboard opens on: the lowest SOH on the latest day (a watch-list one)."""
    import duckdb as ddb

    try:
        with ddb.connect(str(duckdb), read_only=True) as con:
            row = con.execute("select vin from ads.ads_vehicle_soh where as_of_date = "
                              "(select max(as_of_date) from ads.ads_vehicle_soh) "
                              "order by soh_pct, vin limit 1").fetchone()
    except ddb.Error:
        return None
    return row[0] if row else None


def database_uri(source: str, duckdb: Path, chdb: Path) -> str:
    if source == "duckdb":
        return f"duckdb:///{duckdb}"
    return f"clickhousedb://localhost/bi?interface=chdb&path={chdb}"


def bundle(source: str, duckdb: Path, chdb: Path, spec: dict | None = None,
           defaults: dict[str, str] | None = None) -> dict[str, str]:
    """The Superset import bundle of the spec: {file name in the ZIP: YAML text}; defaults:
    the native filters' default values by column (vin: default_vin)."""
    spec = spec or load_spec()
    files: dict[str, str] = {}

    def put(name: str, obj: dict) -> None:
        files[name] = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)

    used = {dataset_source(ds, source) for ds in spec["datasets"].values()}
    for key in sorted(used):
        extra = {"allows_virtual_table_explore": True, "metadata_params": {},
                 "engine_params": ({"connect_args": {"read_only": True}}
                                   if key == "duckdb" else {}),
                 "schemas_allowed_for_file_upload": []}
        put(f"databases/{key}.yaml", {
            "database_name": DATABASES[key], "sqlalchemy_uri": database_uri(key, duckdb, chdb),
            "cache_timeout": None, "expose_in_sqllab": True, "allow_run_async": False,
            "allow_ctas": False, "allow_cvas": False, "allow_dml": False,
            "allow_csv_upload": False, "extra": extra, "uuid": uid("database", key),
            "version": "1.0.0"})
    for name, ds in spec["datasets"].items():
        schema, table = dataset_table(ds, source)
        sql = dataset_sql(ds, source)
        put(f"datasets/{name}.yaml", {
            "table_name": name if sql else table, "main_dttm_col": None,
            "description": f"{ds['table']}" + (" (filtered)" if sql else ""),
            "default_endpoint": None, "offset": 0, "cache_timeout": None, "schema": schema,
            "catalog": None, "sql": sql, "params": None, "template_params": None,
            "filter_select_enabled": True, "fetch_values_predicate": None, "extra": None,
            "normalize_columns": False, "uuid": uid("dataset", name), "metrics": [],
            "columns": [], "version": "1.0.0",
            "database_uuid": uid("database", dataset_source(ds, source))})
    chart_ids = {name: i + 1 for i, name in enumerate(spec["charts"])}
    for name, c in spec["charts"].items():
        put(f"charts/{name}.yaml", {
            "slice_name": c["title"], "description": None, "certified_by": None,
            "certification_details": None, "viz_type": VIZ[c["viz"]],
            "params": chart_params(name, c, 0), "query_context": None, "cache_timeout": None,
            "uuid": uid("chart", name), "version": "1.0.0",
            "dataset_uuid": uid("dataset", c["dataset"])})
    for name, d in spec["dashboards"].items():
        put(f"dashboards/{name}.yaml", {
            "dashboard_title": d["title"], "description": d.get("description"), "css": "",
            "slug": d["slug"], "certified_by": None, "certification_details": None,
            "published": True, "uuid": uid("dashboard", name),
            "position": _position(d, chart_ids, spec),
            "metadata": {"native_filter_configuration": _native_filters(d, chart_ids, defaults),
                         "color_scheme": "supersetColors", "refresh_frequency": 0,
                         "expanded_slices": {}, "label_colors": {}, "shared_label_colors": [],
                         "timed_refresh_immune_slices": [], "cross_filters_enabled": False,
                         "default_filters": "{}", "chart_configuration": {},
                         "global_chart_configuration": {}},
            "version": "1.0.0"})
    return files


def write_bundle(files: dict[str, str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in sorted(files.items()):
            z.writestr(f"nev_battery_bi/{name}", text)
    path.write_bytes(buf.getvalue())
    return path


# --- Superset's home, the provisioning and the server ----------------------------------------

CONFIG = '''\
# Generated by nev-battery bi up; edits are overwritten. Secrets live beside it, never in git.
from pathlib import Path

HOME = Path(__file__).resolve().parent
SECRET_KEY = (HOME / "secret_key").read_text().strip()
SQLALCHEMY_DATABASE_URI = f"sqlite:///{HOME / 'superset.db'}?check_same_thread=false"
DATA_DIR = str(HOME)
# local files only: the DuckDB warehouse (read-only) and the chdb directory
PREVENT_UNSAFE_DB_CONNECTIONS = False
TALISMAN_ENABLED = False
WTF_CSRF_ENABLED = True
RATELIMIT_STORAGE_URI = "memory://"
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120
FEATURE_FLAGS = {"DASHBOARD_NATIVE_FILTERS": True, "ALERT_REPORTS": False}
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
SHOW_STACKTRACE = False
LOG_LEVEL = "WARNING"
'''


def prepare_home(home: Path) -> dict[str, str]:
    """Superset's config and secrets under home; the secret key and the admin password are
    generated once and kept (0600)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitignore").write_text("*\n")
    for name in ("secret_key", "admin_password"):
        p = home / name
        if not p.exists():
            p.write_text(secrets.token_urlsafe(42 if name == "secret_key" else 12) + "\n")
            p.chmod(0o600)
    (home / "superset_config.py").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(SUPERSET_CONFIG_PATH=str(home / "superset_config.py"), SUPERSET_HOME=str(home),
               FLASK_APP="superset.app:create_app()", SUPERSET_LOG_LEVEL="warning",
               PYTHONWARNINGS="ignore", NO_COLOR="1")
    return env


def admin_password(home: Path | None = None) -> str:
    return ((home or superset_home()) / "admin_password").read_text().strip()


def provision(py: Path, home: Path, bundle_zip: Path, env: dict, log=print) -> None:
    """Metadata schema, the admin user, roles, then the bundle (idempotent)."""
    superset = py.parent / "superset"
    t0 = time.perf_counter()
    first = not (home / ".initialised").exists()
    if first:
        log("initialising Superset's metadata (once; about a minute)")
    # an initialised metadata database without users (schema and roles: `db upgrade` and
    # `init`, a minute or two) is kept in the BI venv and copied for every new home
    template = py.parent.parent / f".superset-template-{_lock_digest()}.db"

    def run(*cmd: str) -> None:
        p = subprocess.run(cmd, check=False, env=env, cwd=home, capture_output=True, text=True)
        if p.returncode:
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-25:])
            raise BIError(f"{' '.join(cmd[:3])} failed (exit {p.returncode}):\n{tail}")

    if first:
        if template.exists():
            shutil.copyfile(template, home / "superset.db")
        else:
            run(str(superset), "db", "upgrade")
            run(str(superset), "init")
            shutil.copyfile(home / "superset.db", template)
        run(str(superset), "fab", "create-admin", "--username", ADMIN, "--firstname", "NEV",
            "--lastname", "Admin", "--email", "admin@localhost", "--password",
            admin_password(home))
    run(str(py), str(PROVISION_SCRIPT), str(bundle_zip), ADMIN)
    (home / ".initialised").touch()
    log(f"Superset provisioned in {time.perf_counter() - t0:.0f} s")


DEFAULT_PORT = 8088  # Superset's own default; the dbt exposures' URLs name it


def free_port() -> int:
    """8088 when free, else any free port of 127.0.0.1."""
    for port in (DEFAULT_PORT, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise BIError("no free port on 127.0.0.1")


@dataclass
class Server:
    pid: int
    port: int
    source: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _state_file(home: Path) -> Path:
    return home / "server.json"


def running(home: Path | None = None) -> Server | None:
    f = _state_file(home or superset_home())
    if not f.exists():
        return None
    s = Server(**json.loads(f.read_text()))
    try:
        os.kill(s.pid, 0)
    except OSError:
        f.unlink(missing_ok=True)
        return None
    return s


def _healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start(py: Path, home: Path, env: dict, source: str, port: int | None = None,
          timeout_s: float = 180) -> Server:
    port = port or free_port()
    # one worker, a few threads: the chdb engine is in this process (one process per data dir)
    with open(home / "superset.log", "ab") as log:
        p = subprocess.Popen([str(py.parent / "gunicorn"), "-w", "1", "--threads", "4",
                              "-k", "gthread", "--timeout", "120", "-b", f"127.0.0.1:{port}",
                              "--limit-request-line", "0", "--limit-request-field_size", "0",
                              "superset.app:create_app()"],
                             env=env, cwd=home, stdout=log, stderr=log, start_new_session=True)
    srv = Server(p.pid, port, source)
    deadline = time.monotonic() + timeout_s
    while not _healthy(srv.url):
        if p.poll() is not None or time.monotonic() > deadline:
            stop_pid(p.pid)
            raise BIError(f"Superset did not start (see {home / 'superset.log'})")
        time.sleep(0.5)
    _state_file(home).write_text(json.dumps(srv.__dict__))
    return srv


def stop_pid(pid: int, timeout_s: float = 20) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def up(source: str = "auto", port: int | None = None, log=print) -> Server:
    """Create the BI venv if needed, provision Superset from bi/dashboards.yml, start it (or
    restart it: a running server is stopped first so that it reads the new metadata)."""
    duck, chdb = duckdb_file(), chdb_dir()
    if source == "auto":
        source = "clickhouse" if served(chdb) else "duckdb"
    if not duck.exists():
        raise BIError(f"no DuckDB warehouse at {duck}: run `make run` (or nev-battery demo) "
                      "first")
    if source == "clickhouse" and not served(chdb):
        raise BIError(f"no served tables in {chdb}: run `nev-battery publish --target "
                      "clickhouse_local` first, or use --source duckdb")
    py = ensure_venv(log)
    home = superset_home()
    down(home, quiet=True)
    env = prepare_home(home)
    vin = default_vin(duck)
    zip_path = write_bundle(bundle(source, duck, chdb, defaults={"vin": vin} if vin else None),
                            home / "bundle" / "nev_battery_bi.zip")
    provision(py, home, zip_path, env, log)
    return start(py, home, env, source, port)


def down(home: Path | None = None, quiet: bool = False) -> bool:
    home = home or superset_home()
    s = running(home)
    if s is None:
        return False
    stop_pid(s.pid)
    _state_file(home).unlink(missing_ok=True)
    return True


def dashboard_urls(srv: Server, spec: dict | None = None) -> dict[str, str]:
    spec = spec or load_spec()
    return {d["slug"]: f"{srv.url}/superset/dashboard/{d['slug']}/"
            for d in spec["dashboards"].values()}
