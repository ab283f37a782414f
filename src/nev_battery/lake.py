"""Export of the ADS tables to the lake as Parquet, for the ClickHouse serving layer.

The compute run (DuckDB) writes each served ADS table under ``<lake_root>/ads/<table>/``:
tables with a date by month, ``month=YYYY-MM/data_0.parquet``, the others whole,
``<table>.parquet``. A month is written to a staging folder and then renamed into place, so a
re-export replaces exactly that month (never appends to it) and a reader never reads a
half-written one (between the two renames of a swap the month is briefly absent: publish after
the export, not during it). ``nev-battery publish`` then runs the serving models on a ClickHouse target with
the same months (var publish_months), which load them with file()/s3()/hdfs().
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .warehouse import PROJECT_DIR

# ADS table -> the date whose month partitions it (None: exported and served whole)
SERVED_TABLES: dict[str, str | None] = {
    "ads_vehicle_daily_metrics": "date",
    "ads_vehicle_soh": "as_of_date",
    "ads_battery_warning": "start_time",
    "ads_vehicle_risk_daily": "date",
    "ads_fleet_daily_kpi": "date",
    "ads_fleet_soh_percentile": "month_start",
    "ads_soh_by_window": "window_start",
    "ads_soh_watchlist": None,
    "ads_fault_association": None,
    "ads_soh_by_condition": None,
}
MONTH_RE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


class LakeError(RuntimeError):
    pass


@dataclass
class ExportResult:
    root: Path
    # table -> {month: rows} ("all" for a table exported whole)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    # months a table has no rows for: an empty file (its schema) was written
    emptied: dict[str, list[str]] = field(default_factory=dict)

    def months(self) -> list[str]:
        return sorted({m for t in self.rows.values() for m in t if m != "all"})


def lake_root() -> Path:
    return Path(os.environ.get("NEV_LAKE_ROOT", PROJECT_DIR / "data" / "lake"))


def parse_months(text: str | list[str] | None) -> list[str] | None:
    """'2026-10,2026-11' or a list -> sorted distinct months; None/'' -> None (every month)."""
    if text is None or text == "" or text == []:
        return None
    items = text.split(",") if isinstance(text, str) else text
    out = set()
    for m in items:
        m = str(m).strip()
        if not MONTH_RE.fullmatch(m):
            raise LakeError(f"not a month 'YYYY-MM': {m!r}")
        out.add(m)
    return sorted(out)


def _month_expr(col: str) -> str:
    return f"strftime(cast({col} as date), '%Y-%m')"


def _select(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The table as exported: DuckDB's 128-bit integers (the type of its sum() of integers, e.g.
    a count of vehicles) cast to BIGINT, since its Parquet writer turns them into DOUBLE and BI
    would read counts as floats. A value beyond BIGINT fails the export (a cast, not a wrap)."""
    wide = [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'ads' and "
        "table_name = ? and data_type in ('HUGEINT', 'UHUGEINT') order by ordinal_position",
        [table]).fetchall()]
    replace = (" replace (" + ", ".join(f'cast("{c}" as bigint) as "{c}"' for c in wide) + ")"
               if wide else "")
    return f"select *{replace} from ads.{table}"


def _swap_in(staged: Path, dest: Path) -> None:
    """Replace dest (a month folder or a file) by staged: rename the old one away, the new one
    into place, then delete the old one."""
    old = dest.with_name(f".old-{uuid.uuid4().hex}-{dest.name}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(staged, dest)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def export_ads(con: duckdb.DuckDBPyConnection, root: Path | None = None,
               months: list[str] | None = None,
               tables: list[str] | None = None) -> ExportResult:
    """Write the served ADS tables to the lake: the given months of the partitioned ones (when
    None, every month any of them has) and the whole tables. Every partitioned table gets a
    folder for each of those months, an empty Parquet file (the table's schema) where it has no
    rows, so that a publish of a month finds files for every table."""
    root = Path(root or lake_root())
    res = ExportResult(root)
    existing = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'ads'").fetchall()}
    tables = tables or list(SERVED_TABLES)
    for table in tables:
        if table not in SERVED_TABLES:
            raise LakeError(f"{table} is not a served ADS table ({', '.join(SERVED_TABLES)})")
        if table not in existing:
            raise LakeError(f"ads.{table} is not in the warehouse {con_path(con)}: build it first")
    if months is None:
        months = sorted({r[0] for t in tables if SERVED_TABLES[t] for r in con.execute(
            f"select distinct {_month_expr(SERVED_TABLES[t])} from ads.{t} "
            f"where {SERVED_TABLES[t]} is not null").fetchall()})
    for table in tables:
        col = SERVED_TABLES[table]
        tdir = root / "ads" / table
        tdir.mkdir(parents=True, exist_ok=True)
        stage = tdir / f".staging-{uuid.uuid4().hex}"
        select = _select(con, table)
        try:
            stage.mkdir()
            if col is None:
                staged = stage / f"{table}.parquet"
                con.execute(f"copy ({select}) to '{staged}' (format parquet)")
                (n,) = con.execute(f"select count(*) from ads.{table}").fetchone()
                _swap_in(staged, tdir / f"{table}.parquet")
                res.rows[table] = {"all": n}
                continue
            res.rows[table] = {}
            for m in months:
                mdir = stage / f"month={m}"
                mdir.mkdir()
                sel = f"{select} where {_month_expr(col)} = '{m}'"
                con.execute(f"copy ({sel}) to '{mdir / 'data_0.parquet'}' (format parquet)")
                (n,) = con.execute(f"select count(*) from ({sel})").fetchone()
                _swap_in(mdir, tdir / f"month={m}")
                res.rows[table][m] = n
                if n == 0:
                    res.emptied.setdefault(table, []).append(m)
        finally:
            if stage.exists():
                shutil.rmtree(stage)
    return res


def con_path(con: duckdb.DuckDBPyConnection) -> str:
    try:
        return con.execute("select path from duckdb_databases() where database_name = "
                           "current_database()").fetchone()[0]
    except duckdb.Error:
        return "(warehouse)"


def lake_months(root: Path | None = None) -> list[str]:
    """Months with a folder in the lake, over all partitioned tables."""
    root = Path(root or lake_root())
    return sorted({p.name[6:] for t in SERVED_TABLES if SERVED_TABLES[t]
                   for p in (root / "ads" / t).glob("month=*") if p.is_dir()})


def check_lake(root: Path, months: list[str] | None) -> None:
    """Before a publish: every served table is in the lake with a folder for every month to
    publish (else a table function would fail on an empty glob, naming no file)."""
    missing = [t for t in SERVED_TABLES if not (root / "ads" / t).is_dir()]
    if missing:
        raise LakeError(f"lake {root}: no export of {', '.join(missing)} (run nev-battery export)")
    for t, col in SERVED_TABLES.items():
        if col is None and not (root / "ads" / t / f"{t}.parquet").exists():
            raise LakeError(f"lake {root}: {t}/{t}.parquet missing (run nev-battery export)")
        if col is not None and months:
            absent = [m for m in months if not (root / "ads" / t / f"month={m}").is_dir()]
            if absent:
                raise LakeError(f"lake {root}: {t} has no month folder for {', '.join(absent)}")
            _check_one_schema(root, t, months)


def _check_one_schema(root: Path, table: str, months: list[str]) -> None:
    """The months of a table published together must have one schema. ClickHouse types each
    column from the first file it reads and converts the other files to that type, a value it
    cannot convert becoming NULL: a month exported after a column changed type would load as
    NULLs, silently. (Against the served table ClickHouse checks itself: REPLACE PARTITION
    refuses a staging table of another structure.) A file whose footer cannot be read is left
    to the load, which fails on it and leaves the served table unchanged."""
    first: tuple[Path, list[tuple[str, str]]] | None = None
    for m in months:
        for f in sorted((root / "ads" / table / f"month={m}").glob("*.parquet")):
            try:
                # names and types; not nullability, which DuckDB's writer sets from the data (a
                # column without NULLs that month is `required`) and the served tables ignore
                schema = [(x.name, str(x.type)) for x in pq.read_schema(f)]
            except (OSError, pa.ArrowException):
                continue
            if first is None:
                first = (f, schema)
            elif schema != first[1]:
                a, b = dict(first[1]), dict(schema)
                diff = ", ".join(f"{c}: {a.get(c, 'missing')} vs {b.get(c, 'missing')}"
                                 for c in sorted(a.keys() | b.keys()) if a.get(c) != b.get(c))
                diff = diff or "the columns in another order"
                raise LakeError(f"lake {root}: {table}: {f.relative_to(root)} has another "
                                f"schema than {first[0].relative_to(root)} ({diff}); re-export "
                                "every month and publish with --full-refresh")
