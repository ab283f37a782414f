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
# The one file the export writes in a month folder. The serving models read every *.parquet of
# a folder, so anything else there would be served too: check_lake refuses it by name.
MONTH_FILE = "data_0.parquet"
# the grain of each served table: models/serving/_serving__models.yml
SERVING_MODELS_YML = PROJECT_DIR / "models" / "serving" / "_serving__models.yml"


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


def export_file(table: str) -> str:
    """The name of the file the export writes for a table: in each month folder, or whole."""
    return MONTH_FILE if SERVED_TABLES[table] else f"{table}.parquet"


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
                staged = stage / export_file(table)
                con.execute(f"copy ({select}) to '{staged}' (format parquet)")
                (n,) = con.execute(f"select count(*) from ads.{table}").fetchone()
                _swap_in(staged, tdir / export_file(table))
                res.rows[table] = {"all": n}
                continue
            res.rows[table] = {}
            for m in months:
                mdir = stage / f"month={m}"
                mdir.mkdir()
                sel = f"{select} where {_month_expr(col)} = '{m}'"
                con.execute(f"copy ({sel}) to '{mdir / MONTH_FILE}' (format parquet)")
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
    """Months with a folder in the lake, over all partitioned tables (a folder named otherwise,
    e.g. a copy `month=2026-03 (copy)`, is not a month: check_lake refuses it by name)."""
    root = Path(root or lake_root())
    return sorted({p.name[6:] for t in SERVED_TABLES if SERVED_TABLES[t]
                   for p in (root / "ads" / t).glob("month=*")
                   if p.is_dir() and MONTH_RE.fullmatch(p.name[6:])})


def check_lake(root: Path, months: list[str] | None) -> None:
    """Before a publish, before dbt runs (so that a refused publish changes nothing): every
    served table is in the lake with a folder for every month to publish (else a table function
    would fail on an empty glob, naming no file); the folders hold only the files the export
    wrote; the months of a table have one schema; and the published rows are unique at each
    table's grain. The serving models check the last two again on their staging tables
    (macro serving_guard), for a publish that bypasses this (dbt run straight)."""
    missing = [t for t in SERVED_TABLES if not (root / "ads" / t).is_dir()]
    if missing:
        raise LakeError(f"lake {root}: no export of {', '.join(missing)} (run nev-battery export)")
    for t, col in SERVED_TABLES.items():
        if col is None and not (root / "ads" / t / export_file(t)).exists():
            raise LakeError(f"lake {root}: {t}/{export_file(t)} missing (run nev-battery export)")
        if col is not None and months:
            absent = [m for m in months if not (root / "ads" / t / f"month={m}").is_dir()]
            if absent:
                raise LakeError(f"lake {root}: {t} has no month folder for {', '.join(absent)}")
    _check_only_exported_files(root, months or [])
    for t, col in SERVED_TABLES.items():
        if col is not None and months:
            _check_one_schema(root, t, months)
    _check_grain(root, months or [])


def _check_only_exported_files(root: Path, months: list[str]) -> None:
    """The folders a publish reads hold exactly what the export writes: a month folder
    data_0.parquet alone, a table exported whole <table>.parquet alone, the folder of a table
    by month its month=YYYY-MM folders alone. The serving models read every *.parquet of a
    folder, so a stray copy (`data_0 (copy).parquet`, a file put there by hand or by another
    job) would be served beside the export's rows: BI would see doubled numbers.

    Why the exact names and not a manifest of the files and their rows written by the export:
    a month's only file is written inside the month folder that is then renamed into place, so
    the name is exact by construction and there is nothing to keep in sync, while a manifest is
    one more file that must agree with the data (and, for a table exported whole, could not be
    swapped in together with its file). A manifest would add only a row count per file; the
    serving models compare their staging tables with the rows of these very files anyway
    (macro serving_guard), and a file rewritten with duplicated rows is refused by its grain
    (_check_grain). Lakes exported before the guard existed need no re-export.

    Only the month folders published are looked into: a month not published is not read."""
    stray: list[tuple[Path, str, str]] = []  # folder, name, remedy
    for t, col in SERVED_TABLES.items():
        tdir = root / "ads" / t
        for p in sorted(tdir.iterdir()):
            if col is None:
                ok = p.name == export_file(t) and p.is_file()
            else:
                ok = p.is_dir() and p.name.startswith("month=") and bool(
                    MONTH_RE.fullmatch(p.name[6:]))
            if ok:
                continue
            if p.name.startswith((".staging-", ".old-")):
                # export_ads's own staging, present while it writes (or left by a killed export)
                fix = "an export is writing this table, or was killed: publish after it ends"
            else:
                fix = "delete it"
            stray.append((tdir, p.name, fix))
        if col is not None:
            for m in months:
                mdir = tdir / f"month={m}"
                fix = f"delete it, or re-run nev-battery export --months {m} (rewrites the folder)"
                stray += [(mdir, p.name, fix) for p in sorted(mdir.iterdir())
                          if p.name != MONTH_FILE or not p.is_file()]
    if stray:
        shown = "\n".join(f"  {d.relative_to(root)}/: {name!r}: {fix}"
                          for d, name, fix in stray[:20])
        more = f"\n  ... and {len(stray) - 20} more" if len(stray) > 20 else ""
        raise LakeError(
            f"lake {root}: files that nev-battery export did not write, in folders the publish "
            f"reads (a month folder holds {MONTH_FILE} alone, a table exported whole "
            "<table>.parquet alone; ClickHouse would load every *.parquet beside the export's "
            f"rows); nothing was published:\n{shown}{more}")


def served_grains() -> dict[str, list[str]]:
    """ADS table -> the columns of its grain: the unique_combination_of_columns test of its
    serving model, the one declaration that dbt's data test, the serving models' pre-replace
    check (macro serving_guard) and _check_grain all use."""
    import yaml

    out = {}
    for model in yaml.safe_load(SERVING_MODELS_YML.read_text())["models"]:
        for test in model.get("data_tests", []):
            spec = test.get("unique_combination_of_columns") if isinstance(test, dict) else None
            if spec is not None:
                args = spec.get("arguments", spec)
                out["ads_" + model["name"].removeprefix("srv_")] = list(
                    args["combination_of_columns"])
    return out


def _check_grain(root: Path, months: list[str]) -> None:
    """The rows to publish are unique at each table's grain, checked in the files (key columns
    only, one DuckDB query per table): a month file rewritten with duplicated rows would pass
    REPLACE PARTITION and serve them. Names the file(s) and a few duplicated keys. A file that
    cannot be read is left to the load, which fails on it and leaves the served table as it
    was."""
    grains = served_grains()
    with duckdb.connect() as con:
        for t, col in SERVED_TABLES.items():
            files = ([root / "ads" / t / export_file(t)] if col is None else
                     [root / "ads" / t / f"month={m}" / MONTH_FILE for m in months])
            if not files:
                continue
            keys = ", ".join(f'"{c}"' for c in grains[t])
            try:
                dups = con.execute(
                    f"select {keys}, count(*) as n, list(distinct filename order by filename), "
                    "count(*) over () from read_parquet(?, filename = true, hive_partitioning = "
                    f"false) group by {keys} having count(*) > 1 order by n desc, {keys} limit 3",
                    [[str(f) for f in files]]).fetchall()
            except duckdb.Error:
                continue
            if dups:
                k = len(grains[t])
                where = sorted({str(Path(f).relative_to(root)) for r in dups for f in r[k + 1]})
                shown = ", ".join(f"({', '.join(map(str, r[:k]))}) x{r[k]}" for r in dups)
                raise LakeError(
                    f"lake {root}: {t}: {dups[0][-1]} key(s) of its grain ({', '.join(grains[t])}) "
                    f"occur more than once in {', '.join(where)}, e.g. {shown}; re-run "
                    "nev-battery export for those months "
                    "(or fix the ADS table and export it); nothing was published")


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
