"""Run the dbt project: full builds, daily incremental runs and back-fills, and a summary.

Incremental models replace whole ``collect_date`` days (day_replace on DuckDB,
insert_overwrite of date partitions on Spark). A run is told which days to rebuild through the
``batch_dates`` var; this module decides that list:

* ``daily``: the run date plus every partition holding a file that is new or changed since the
  last successful run (re-sends arrive up to 3 days late, GB/T 32960.3 B.2.8, and a T-BOX with a
  wrong clock writes into far-away partitions; the landing listing finds them all, so no fixed
  look-back window is needed; ``--lookback-days`` adds one);
* ``backfill``: an explicit date range;
* ``full``: everything (``--full-refresh``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

PROJECT_DIR = Path(__file__).resolve().parents[2]
STATE_TABLE = "main.nev_landing_state"
LAYERS = ("ods", "dws", "dwd", "ads")


class WarehouseError(RuntimeError):
    pass


@dataclass
class BuildResult:
    ok: bool
    seconds: float
    batch_dates: list[str] | None
    failures: list[str]


def landing_root() -> Path:
    return Path(os.environ.get("NEV_LANDING_ROOT", PROJECT_DIR / "data" / "landing"))


def duckdb_path() -> Path:
    return Path(os.environ.get("NEV_DUCKDB_PATH", PROJECT_DIR / "warehouse" / "nev_battery.duckdb"))


def connect(read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse file. dbt runs in-process and dbt-duckdb keeps its own
    (read-write) instance open; DuckDB refuses a second instance of the same file with another
    configuration, so a read-only request falls back to the configuration already open."""
    path = str(duckdb_path())
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.ConnectionException:
        return duckdb.connect(path)


def list_landing_files(root: Path | None = None) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of the real-time landing files (a directory listing)."""
    root = root or landing_root()
    out = {}
    rt = root / "gbt32960_realtime"
    if not rt.exists():
        return out
    for part in rt.iterdir():
        if part.is_dir() and part.name.startswith("dt="):
            for f in part.iterdir():
                if f.suffix == ".parquet":
                    st = f.stat()
                    out[f"{rt.name}/{part.name}/{f.name}"] = (st.st_size, st.st_mtime_ns)
    return out


def changed_partitions(con: duckdb.DuckDBPyConnection, files: dict) -> set[str]:
    """Dates of partitions with a file that is new or changed since the last successful run."""
    try:
        seen = {r[0]: (r[1], r[2]) for r in con.execute(
            f"select file_path, size_bytes, mtime_ns from {STATE_TABLE}").fetchall()}
    except duckdb.CatalogException:
        seen = {}
    return {p.split("/")[1][3:] for p, st in files.items() if seen.get(p) != st}


def save_state(con: duckdb.DuckDBPyConnection, files: dict) -> None:
    con.execute(f"create or replace table {STATE_TABLE} (file_path varchar, size_bytes bigint, "
                "mtime_ns bigint)")
    if files:
        con.executemany(f"insert into {STATE_TABLE} values (?, ?, ?)",
                        [(p, s, m) for p, (s, m) in files.items()])


def run_dbt(args: list[str], target: str | None = None) -> tuple[bool, list[str]]:
    """Invoke dbt in-process; returns (success, failed node messages)."""
    from dbt.cli.main import dbtRunner

    cli = [*args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    if target:
        cli += ["--target", target]
    res = dbtRunner().invoke(cli)
    failures = []
    if res.result is not None and hasattr(res.result, "results"):
        for r in res.result.results:
            if str(r.status) in ("error", "fail"):
                failures.append(f"{r.node.unique_id}: {r.status}: {r.message}")
    if res.exception is not None:
        failures.append(f"dbt: {res.exception}")
    return bool(res.success), failures


def build(batch_dates: list[str] | None = None, full_refresh: bool = False,
          select: str | None = None, command: str = "build", target: str | None = None,
          extra_vars: dict | None = None, extra_args: list[str] | None = None) -> BuildResult:
    t0 = time.perf_counter()
    duckdb_path().parent.mkdir(parents=True, exist_ok=True)
    files = list_landing_files()
    vars_ = dict(extra_vars or {})
    if batch_dates is not None:
        vars_["batch_dates"] = sorted(batch_dates)
    args = [command]
    if vars_:
        args += ["--vars", json.dumps(vars_)]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    args += list(extra_args or [])
    ok, failures = run_dbt(args, target)
    if ok and (target in (None, "duckdb")):
        with connect(read_only=False) as con:
            save_state(con, files)
    return BuildResult(ok, time.perf_counter() - t0, batch_dates, failures)


def daily_batch(run_date: date, lookback_days: int = 0) -> list[str]:
    window = {str(run_date - timedelta(days=i)) for i in range(lookback_days + 1)}
    files = list_landing_files()
    path = duckdb_path()
    if path.exists():
        with connect() as con:
            window |= changed_partitions(con, files)
    else:
        window |= {p.split("/")[1][3:] for p in files}
    return sorted(window)


def backfill_batch(start: date, end: date) -> list[str]:
    return [str(start + timedelta(days=i)) for i in range((end - start).days + 1)]


def landing_dates() -> list[str]:
    return sorted({p.split("/")[1][3:] for p in list_landing_files()})


def summary(con: duckdb.DuckDBPyConnection) -> dict:
    """Rows per model and layer, quarantined rows by reason, landing-file problems."""
    tables = con.execute("""
        select table_schema, table_name, table_type = 'VIEW' from information_schema.tables
        where table_schema in ('ods', 'dws', 'dwd', 'ads') order by 1, 2
    """).fetchall()
    rows, views = {}, set()
    for schema, name, is_view in tables:
        rows[f"{schema}.{name}"] = con.execute(f'select count(*) from "{schema}"."{name}"'
                                               ).fetchall()[0][0]
        if is_view:
            views.add(f"{schema}.{name}")
    out = {"rows": rows, "views": views}
    if "dws.dws_quarantine" in rows:
        out["quarantine"] = con.execute("""
            select reason_code, action, count(*) as n from dws.dws_quarantine
            group by all order by n desc
        """).fetchall()
    if "dws.dws_realtime_frame" in rows:
        out["vehicles"], out["days"] = con.execute(
            "select count(distinct vin), count(distinct collect_date) from dws.dws_realtime_frame"
        ).fetchall()[0]
    if "ods.ods_landing_file" in rows:
        out["landing_problems"] = con.execute("""
            select file_path, error_code, error_message from ods.ods_landing_file
            where not is_valid or error_code is not null order by file_path
        """).fetchall()
    if rows.get("ads.ads_vehicle_soh"):
        out["soh"] = con.execute("""
            select max(s.as_of_date), count(*), quantile_cont(s.soh_pct, 0.1),
                   median(s.soh_pct), quantile_cont(s.soh_pct, 0.9),
                   avg(s.soh_upper_pct - s.soh_lower_pct), any_value(s.model_version),
                   (select count(*) from ads.ads_soh_watchlist)
            from ads.ads_vehicle_soh as s
            where s.as_of_date = (select max(as_of_date) from ads.ads_vehicle_soh)
        """).fetchall()[0]
    return out


def format_summary(s: dict) -> str:
    lines = []
    if "vehicles" in s:
        lines.append(f"vehicles {s['vehicles']}, days {s['days']}")
    lines.append("rows per model, by layer:")
    views = s.get("views", set())
    for layer in LAYERS:
        models = [(k, v) for k, v in s["rows"].items() if k.startswith(layer + ".")]
        lines.append(f"  {layer.upper()}" + ("" if models else "  (no models built)"))
        for k, v in models:
            lines.append(f"    {k:<40} {v:>12,}" + ("  (view)" if k in views else ""))
    if s.get("quarantine"):
        lines.append("quarantined by reason:")
        for reason, action, n in s["quarantine"]:
            lines.append(f"  {reason:<32} {action:<14} {n:>10,}")
    if s.get("soh"):
        day, n, p10, p50, p90, width, version, watch = s["soh"]
        lines.append(f"SOH on {day} ({version}): {n} vehicles, P10 {p10:.1f} %, median "
                     f"{p50:.1f} %, P90 {p90:.1f} %, mean 90 % interval width {width:.2f} pp; "
                     f"{watch} on the watch list")
    if s.get("landing_problems"):
        lines.append("landing files with problems:")
        for f, code, msg in s["landing_problems"]:
            lines.append(f"  {f}: {code}: {msg}")
    return "\n".join(lines)
