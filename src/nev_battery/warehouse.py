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

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from .landing import (
    MASTER_SCHEMA,
    MASTER_TABLE,
    REALTIME_TABLE,
    _parse_dt,
    audit_landing,
    verify_file_data,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
# the manifest of processed landing files (path, size, mtime, footer rows, status)
STATE_TABLE = "main.nev_landing_state"
# vin -> hash of its master rows as of the last successful run (finds master changes)
MASTER_STATE_TABLE = "main.nev_master_state"
# consented history shrinks (--allow-shrink), one row per finding
SHRINK_TABLE = "main.nev_history_shrink"
LAYERS = ("ods", "dws", "dwd", "ads")


class WarehouseError(RuntimeError):
    """A run refused before dbt ran (or stopped after a failed one): the message names the path,
    file or flag and the remedy, and nothing in the warehouse was changed."""


class ShrinkError(WarehouseError):
    """Rebuilding the requested days would delete rows whose landing files vanished, shrank or
    became unreadable since they were processed (history never shrinks without --allow-shrink)."""


@dataclass
class BuildResult:
    ok: bool
    seconds: float
    batch_dates: list[str] | None
    failures: list[str]
    # what the run noticed and the operator should read (quarantined files, master changes,
    # a consented shrink, no SOH model)
    notes: list[str] = field(default_factory=list)


def landing_root(extra_vars: dict | None = None) -> Path:
    """The landing root as dbt resolves it (macro landing_root): env NEV_LANDING_ROOT, else the
    run's var landing_root, else the project default."""
    env = os.environ.get("NEV_LANDING_ROOT")
    if env:
        return Path(env)
    var = (extra_vars or {}).get("landing_root")
    return Path(var) if var else PROJECT_DIR / "data" / "landing"


def target_type(target: str | None) -> str | None:
    """The adapter type of a profiles.yml target (the default target when None)."""
    import yaml

    prof = yaml.safe_load((PROJECT_DIR / "profiles.yml").read_text())["nev_battery"]
    out = prof["outputs"].get(target or prof.get("target", "duckdb"))
    return out.get("type") if out else None


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


# --- one run at a time ------------------------------------------------------------------------

@contextmanager
def warehouse_lock(command: str):
    """An exclusive lock on the warehouse for the whole command (a lock file beside the DuckDB
    file, flock: the kernel releases it when the holder dies, even by kill -9, so it never goes
    stale). A second run gets a WarehouseError naming the PID that holds it."""
    path = duckdb_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(f"{path}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise WarehouseError(
                f"the warehouse {path} is in use by {holder}; wait for that run to finish (or "
                "stop it) and run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} (nev-battery {command}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --- the landing zone and the manifest of processed files -------------------------------------

def check_landing_root(root: Path) -> None:
    """Refuse a landing root that is not a landing zone before dbt runs: a typo in
    NEV_LANDING_ROOT would otherwise read as an empty landing zone and empty the warehouse."""
    remedy = ("set NEV_LANDING_ROOT (or --var landing_root=...) to the folder that holds "
              f"{REALTIME_TABLE}/ and {MASTER_TABLE}/")
    if not root.exists():
        raise WarehouseError(f"landing root {root} does not exist; {remedy}")
    if not root.is_dir():
        raise WarehouseError(f"landing root {root} is not a folder; {remedy}")
    rt = root / REALTIME_TABLE
    if not rt.is_dir() or not any(p.is_dir() and _parse_dt(p.name) for p in rt.iterdir()):
        raise WarehouseError(f"landing root {root} holds no {REALTIME_TABLE}/dt=YYYY-MM-DD "
                             f"partition; {remedy}")
    if not (root / MASTER_TABLE).is_dir():
        raise WarehouseError(f"landing root {root} has no {MASTER_TABLE}/ folder; {remedy}")


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? "
                            "and table_name = ?", [schema, name]).fetchall()[0][0])


@dataclass
class LandingState:
    """The landing zone now (footer audit, file stats) against what earlier runs processed."""

    root: Path
    audit: pd.DataFrame                     # audit_landing rows, corrupt files marked
    stats: dict[str, tuple[int, int]]       # file_path -> (size, mtime_ns) of files now
    manifest: pd.DataFrame                  # STATE_TABLE rows (empty without a warehouse)
    master_now: pd.DataFrame                # vin, master_hash of the valid master files
    master_before: pd.DataFrame             # the same, as of the last successful run

    def quarantine(self) -> dict[str, str]:
        """{file_path: message} of the files known to have corrupt data pages (same size and
        mtime as when they were found: a replaced file is checked again)."""
        m = self.manifest[self.manifest["status"] == "corrupt_data"]
        return {r.file_path: r.message for r in m.itertuples()
                if self.stats.get(r.file_path) == (r.size_bytes, r.mtime_ns)}

    def partition_dates(self) -> list[str]:
        a = self.audit
        ok = a[(a["table_name"] == REALTIME_TABLE) & a["partition_date"].notna()]
        return sorted(set(ok["partition_date"]))

    def changed_partitions(self) -> set[str]:
        """Dates of partitions with a file that is new, changed or vanished since the last
        successful run that processed it (a late file, a re-sent day, a deleted file)."""
        m = self.manifest[self.manifest["table_name"] == REALTIME_TABLE]
        seen = {r.file_path: (r.size_bytes, r.mtime_ns) for r in m.itertuples()}
        a = self.audit
        files = a[(a["table_name"] == REALTIME_TABLE) & a["partition_date"].notna()
                  & a["file_path"].isin(list(self.stats))]
        out = {r.partition_date for r in files.itertuples()
               if seen.get(r.file_path) != self.stats[r.file_path]}
        out |= {r.partition_date for r in m.itertuples() if r.file_path not in self.stats}
        return out

    def unverified_files(self) -> list[str]:
        """Valid, non-empty files no successful run has read at their current size and mtime."""
        m = self.manifest[self.manifest["status"] == "processed"]
        seen = {r.file_path: (r.size_bytes, r.mtime_ns) for r in m.itertuples()}
        a = self.audit
        a = a[a["is_valid"].astype(bool) & (a["row_count"] > 0)]
        return [f for f in a["file_path"] if seen.get(f) != self.stats.get(f)]


def _day(value) -> str | None:
    """A partition date as 'YYYY-MM-DD' (None for the master), whatever type it came in."""
    return None if value is None or pd.isna(value) else str(pd.Timestamp(value).date())


MANIFEST_COLUMNS = ["table_name", "file_path", "partition_date", "size_bytes", "mtime_ns",
                    "row_count", "status", "message", "recorded_at"]


def _read_manifest(con: duckdb.DuckDBPyConnection | None) -> pd.DataFrame:
    empty = pd.DataFrame({c: [] for c in MANIFEST_COLUMNS})
    if con is None or not _table_exists(con, STATE_TABLE):
        return empty
    cols = {r[0] for r in con.execute(f"describe {STATE_TABLE}").fetchall()}
    if "status" not in cols:
        # a manifest of an earlier version (path, size, mtime): the files were processed, their
        # row counts unknown; rewritten in full after the next successful run
        return con.execute(f"""
            select '{REALTIME_TABLE}' as table_name, file_path,
                   try_cast(regexp_extract(file_path, 'dt=([0-9-]+)', 1) as date) as partition_date,
                   size_bytes, mtime_ns, cast(null as bigint) as row_count,
                   'processed' as status, cast(null as varchar) as message,
                   cast(null as timestamp) as recorded_at
            from {STATE_TABLE}""").df().assign(partition_date=lambda d: d["partition_date"].map(_day))
    # partition_date as 'YYYY-MM-DD' text, as the batch dates are
    return con.execute(f"select {', '.join(MANIFEST_COLUMNS)} from {STATE_TABLE}").df().assign(
        partition_date=lambda d: d["partition_date"].map(_day))


def _master_hashes(root: Path, audit: pd.DataFrame) -> pd.DataFrame:
    """vin -> a hash of its master rows, from the valid master files (VINs normalised as ODS
    does): a vehicle whose master rows change is found by comparing two of these."""
    files = audit[(audit["table_name"] == MASTER_TABLE) & audit["is_valid"].astype(bool)
                  & (audit["row_count"] > 0)]["file_path"].tolist()
    if not files:
        return pd.DataFrame({"vin": [], "master_hash": []})
    cols = ", ".join(c for c in MASTER_SCHEMA if c != "vin")
    with duckdb.connect() as con:
        return con.execute(f"""
            select upper(trim(vin)) as vin,
                   cast(sum(hash({cols})::hugeint) as varchar) || ':' || count(*) as master_hash
            from read_parquet(?, union_by_name = true)
            where vin is not null
            group by all""", [[str(root / f) for f in files]]).df()


def _audit(root: Path, quarantine: dict[str, str]) -> pd.DataFrame:
    """The footer audit (as ods_landing_file makes it) with partition dates as text."""
    a = audit_landing(root, quarantine)
    return a.assign(partition_date=a["partition_date"].map(_day))


def landing_state(root: Path, con: duckdb.DuckDBPyConnection | None) -> LandingState:
    manifest = _read_manifest(con)
    before = (con.execute(f"select vin, master_hash from {MASTER_STATE_TABLE}").df()
              if con is not None and _table_exists(con, MASTER_STATE_TABLE)
              else pd.DataFrame({"vin": [], "master_hash": []}))
    stats = {}
    for table in (REALTIME_TABLE, MASTER_TABLE):
        d = root / table
        for f in d.rglob("*") if d.is_dir() else []:
            if f.is_file():
                st = f.stat()
                stats[f.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    state = LandingState(root, pd.DataFrame(), stats, manifest, pd.DataFrame(), before)
    state.audit = _audit(root, state.quarantine())
    state.master_now = _master_hashes(root, state.audit)
    return state


def _fmt_rows(n) -> str:
    return "row count unknown" if n is None or pd.isna(n) else f"{int(n):,} rows"


def find_shrinks(state: LandingState, days: list[str] | None,
                 con: duckdb.DuckDBPyConnection | None) -> list[str]:
    """What rebuilding `days` (None = all) would lose: processed files of those days that
    vanished, became invalid or hold fewer rows; master files likewise; VINs the master no
    longer lists although they have data. One line per finding, naming day, file and rows."""
    out = []
    audit = state.audit.set_index("file_path")
    m = state.manifest[state.manifest["status"] == "processed"]
    for r in m.sort_values(["partition_date", "file_path"], na_position="first").itertuples():
        is_rt = r.table_name == REALTIME_TABLE
        if is_rt and days is not None and r.partition_date not in days:
            continue
        where = f"{r.partition_date}: " if is_rt else "vehicle master: "
        if r.file_path not in audit.index:
            out.append(f"{where}{r.file_path} vanished ({_fmt_rows(r.row_count)} processed)")
            continue
        cur = audit.loc[r.file_path]
        if not bool(cur["is_valid"]):
            out.append(f"{where}{r.file_path} is now {cur['error_code']} "
                       f"({_fmt_rows(r.row_count)} processed, none readable): "
                       f"{cur['error_message']}")
        elif pd.notna(r.row_count) and cur["row_count"] < r.row_count:
            out.append(f"{where}{r.file_path} shrank from {int(r.row_count):,} to "
                       f"{int(cur['row_count']):,} rows ({int(r.row_count - cur['row_count']):,} "
                       "rows fewer)")
    gone = sorted(set(state.master_before["vin"]) - set(state.master_now["vin"]))
    if gone:
        vin_days = vin_dates(con, gone)
        out.append(f"vehicle master: {len(gone)} VIN(s) no longer listed ("
                   + ", ".join(gone[:5]) + (", ..." if len(gone) > 5 else "")
                   + f"); their frames on {len(vin_days)} day(s) would become unknown_vin "
                   "and leave dws_vehicle")
    return out


def vin_dates(con: duckdb.DuckDBPyConnection | None, vins: list[str]) -> list[str]:
    """Days on which the warehouse holds data of these VINs (daily rows, or quarantined frames:
    a VIN missing from the master is quarantined as unknown_vin)."""
    if con is None or not vins:
        return []
    parts = []
    if _table_exists(con, "dwd.dwd_vehicle_daily"):
        parts.append("select date as d from dwd.dwd_vehicle_daily where vin in (select * from v)")
    if _table_exists(con, "dws.dws_quarantine"):
        parts.append("select collect_date as d from dws.dws_quarantine "
                     "where vin in (select * from v)")
    if not parts:
        return []
    con.execute("create or replace temp table v as select unnest(?::varchar[]) as vin", [vins])
    try:
        rows = con.execute(" union ".join(parts)).fetchall()
    finally:
        con.execute("drop table if exists v")
    return sorted({str(r[0]) for r in rows if r[0] is not None})


def master_changed_vins(state: LandingState) -> list[str]:
    """VINs added to the master or whose master rows changed since the last successful run."""
    if state.master_before.empty:
        return []
    before = dict(zip(state.master_before["vin"], state.master_before["master_hash"]))
    return sorted(v for v, h in zip(state.master_now["vin"], state.master_now["master_hash"])
                  if before.get(v) != h)


def _manifest_rows(state: LandingState, audit_rows: pd.DataFrame, status: str,
                   messages: dict[str, str] | None = None) -> pd.DataFrame:
    files = audit_rows["file_path"].tolist()
    return pd.DataFrame({
        "table_name": audit_rows["table_name"].tolist(), "file_path": files,
        "partition_date": audit_rows["partition_date"].tolist(),
        "size_bytes": [state.stats[f][0] for f in files],
        "mtime_ns": [state.stats[f][1] for f in files],
        "row_count": audit_rows["row_count"].tolist(), "status": status,
        "message": [(messages or {}).get(f) for f in files],
        "recorded_at": pd.Timestamp.now().floor("s")}, columns=MANIFEST_COLUMNS)


def _write_manifest(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    frame = frame.drop_duplicates("file_path", keep="last")[MANIFEST_COLUMNS]
    frame = frame.assign(partition_date=frame["partition_date"].map(_day))
    con.execute(f"""create or replace table {STATE_TABLE} (table_name varchar, file_path varchar,
        partition_date date, size_bytes bigint, mtime_ns bigint, row_count bigint,
        status varchar, message varchar, recorded_at timestamp)""")
    if len(frame):
        con.register("manifest_rows", frame)
        con.execute(f"""insert into {STATE_TABLE} select table_name, file_path,
            cast(partition_date as date), size_bytes, mtime_ns, row_count, status, message,
            cast(recorded_at as timestamp) from manifest_rows""")
        con.unregister("manifest_rows")


def save_state(con: duckdb.DuckDBPyConnection, state: LandingState, days: list[str] | None,
               corrupt: dict[str, str]) -> None:
    """After a successful run: the files of the processed days (all days on a full build) and
    the master files are recorded as processed at their current size, mtime and footer rows;
    entries of other days stay as they were (their files were not read: a later daily run still
    sees them as new). Corrupt files stay recorded as such."""
    a = state.audit[state.audit["file_path"].isin(list(state.stats))]
    old = state.manifest
    if days is None:
        in_scope = (a["table_name"] == MASTER_TABLE) | a["partition_date"].notna()
        keep = old.iloc[0:0]
    else:
        in_scope = (a["table_name"] == MASTER_TABLE) | a["partition_date"].isin(days)
        keep = old[(old["table_name"] == REALTIME_TABLE) & (old["status"] != "corrupt_data")
                   & ~old["partition_date"].isin(days)]
    q = {**state.quarantine(), **corrupt}
    valid = a["is_valid"].astype(bool)
    # invalid files are recorded too (status "invalid"), so that an unchanged bad file does not
    # make its day look new to every later daily run; it is reported by the audit each run
    invalid = a[in_scope & ~valid & a["partition_date"].notna() & ~a["file_path"].isin(list(q))]
    frames = [keep, _manifest_rows(state, a[in_scope & valid], "processed"),
              _manifest_rows(state, invalid, "invalid",
                             dict(zip(invalid["file_path"], invalid["error_message"]))),
              _manifest_rows(state, a[a["file_path"].isin(list(q))], "corrupt_data", q)]
    con.execute("begin")
    _write_manifest(con, pd.concat([f for f in frames if len(f)] or [frames[1]],
                                   ignore_index=True))
    con.execute(f"create or replace table {MASTER_STATE_TABLE} (vin varchar, master_hash varchar)")
    if len(state.master_now):
        con.register("master_rows", state.master_now[["vin", "master_hash"]])
        con.execute(f"insert into {MASTER_STATE_TABLE} select * from master_rows")
        con.unregister("master_rows")
    con.execute("commit")


def record_shrink(con: duckdb.DuckDBPyConnection, findings: list[str], command: str) -> None:
    """The operator's consent to a shrink, kept: one audit row per finding."""
    con.execute(f"create table if not exists {SHRINK_TABLE} (recorded_at timestamp, "
                "command varchar, finding varchar)")
    con.executemany(f"insert into {SHRINK_TABLE} values (current_timestamp::timestamp, ?, ?)",
                    [(command, f) for f in findings])


# --- running dbt ------------------------------------------------------------------------------

def run_dbt(args: list[str], target: str | None = None,
            quiet: bool = False) -> tuple[bool, list[str]]:
    """Invoke dbt in-process; returns (success, failed node messages). Colours only on a
    terminal; quiet: dbt prints warnings and errors only (its log file keeps everything)."""
    from dbt.cli.main import dbtRunner

    cli = [*args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    if not sys.stdout.isatty():
        cli.append("--no-use-colors")
    if quiet:
        cli += ["--log-level", "warn"]
    if target:
        cli += ["--target", target]
    res = dbtRunner().invoke(cli)
    failures = []
    if res.result is not None and hasattr(res.result, "results"):
        for r in res.result.results:
            if str(r.status) in ("error", "fail"):
                # a run-operation's result has no node
                node = getattr(getattr(r, "node", None), "unique_id", "operation")
                failures.append(f"{node}: {r.status}: {r.message}")
    if res.exception is not None:
        failures.append(f"dbt: {res.exception}")
    return bool(res.success), failures


def _dbt_args(command: str, vars_: dict, full_refresh: bool, select: str | None,
              extra_args: list[str] | None) -> list[str]:
    args = [command]
    if vars_:
        args += ["--vars", json.dumps(vars_)]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", select]
    return args + list(extra_args or [])


def verify_landing_files(state: LandingState, files: list[str]) -> dict[str, str]:
    """{file_path: message} of the files whose data pages DuckDB cannot decode."""
    out = {}
    a = state.audit.set_index("file_path")
    for f in files:
        err = verify_file_data(state.root / f, a.loc[f, "table_name"])
        if err is not None:
            out[f] = (f"{f}: data cannot be decoded ({err}); the file is quarantined and the "
                      "rest of its day builds: replace it with a good copy (it is checked again) "
                      "or delete it")
    return out


def build(batch_dates: list[str] | None = None, full_refresh: bool = False,
          select: str | None = None, command: str = "build", target: str | None = None,
          extra_vars: dict | None = None, extra_args: list[str] | None = None,
          allow_shrink: bool = False, quiet: bool = False) -> BuildResult:
    """One dbt run over the landing zone, guarded: the landing root must be a landing zone, the
    run must not delete processed rows without allow_shrink, a master change adds the days it
    affects, and a file whose data pages cannot be decoded is quarantined (the run is repeated
    without it). Raises WarehouseError when refused (nothing changed)."""
    t0 = time.perf_counter()
    vars_ = dict(extra_vars or {})
    notes: list[str] = []
    serving = (target or "").startswith("clickhouse")
    if serving:
        # the serving layer reads the lake, not the landing zone
        ok, failures = run_dbt(_dbt_args(command, vars_, full_refresh, select, extra_args), target)
        return BuildResult(ok, time.perf_counter() - t0, batch_dates, failures)
    root = landing_root(vars_)
    check_landing_root(root)
    if target_type(target) in ("spark", "nevspark"):
        # the Spark server resolves a relative path from its own folder (nev-battery spark
        # start: warehouse/spark): the landing root as an absolute path
        if os.environ.get("NEV_LANDING_ROOT"):
            if "://" not in os.environ["NEV_LANDING_ROOT"]:
                os.environ["NEV_LANDING_ROOT"] = str(root.resolve())
        elif "://" not in str(vars_.get("landing_root", "")):
            vars_["landing_root"] = str(root.resolve())
    # the rules of the run, read once (the seeds, or MySQL when NEV_RULES_URL is set) and
    # validated before any model runs (RulesError, exit code 2); dbt gets their version, the
    # detector settings and, from MySQL, the snapshot of the rule tables
    from .rules import resolve_rules

    rules = resolve_rules(vars_)
    vars_.update(rules.dbt_vars())
    notes.append(f"rules from {rules.source} ({rules.origin}), version {rules.version}"
                 + (f", run overrides: {rules.overrides}" if rules.overrides else ""))
    duckdb_path().parent.mkdir(parents=True, exist_ok=True)
    local = target in (None, "duckdb")
    con = connect(read_only=False) if local and duckdb_path().exists() else None
    try:
        state = landing_state(root, con)
        days = None if batch_dates is None or full_refresh else sorted(set(batch_dates))
        if days is not None:
            changed = master_changed_vins(state)
            extra = sorted(set(vin_dates(con, changed)) - set(days))
            if extra:
                notes.append(f"vehicle master changed for {len(changed)} VIN(s): also rebuilding "
                             f"{len(extra)} day(s) with their data: {', '.join(extra)}")
                days = sorted(set(days) | set(extra))
        shrinks = find_shrinks(state, days, con) if local else []
        if shrinks and not allow_shrink:
            raise ShrinkError(
                "refusing to run: history would shrink (rows processed earlier would be "
                "deleted):\n  " + "\n  ".join(shrinks) + "\nRestore the files, or rerun with "
                "--allow-shrink to rebuild without them (recorded in " + SHRINK_TABLE + ").")
    finally:
        if con is not None:
            con.close()
    if days is not None:
        vars_["batch_dates"] = days
    corrupt: dict[str, str] = {}

    def attempt() -> tuple[bool, list[str]]:
        q = {**state.quarantine(), **corrupt}
        if q:
            vars_["landing_quarantine"] = json.dumps(q, sort_keys=True)
        return run_dbt(_dbt_args(command, vars_, full_refresh, select, extra_args), target,
                       quiet)

    ok, failures = attempt()
    if not ok:
        # a file whose footer reads but whose data pages do not fails the run with the
        # reader's error and no file named: decode the files no run has read yet, quarantine
        # the bad ones and run once more without them
        corrupt = verify_landing_files(state, state.unverified_files())
        if corrupt:
            notes += [f"quarantined (corrupt_data): {m}" for m in corrupt.values()]
            state.audit = _audit(root, {**state.quarantine(), **corrupt})
            if local:
                with connect(read_only=False) as c:
                    _remember_corrupt(c, state, corrupt)
            lost = find_shrinks(state, days, None) if local else []
            if lost and not allow_shrink:
                raise ShrinkError("refusing to run without the corrupt file(s): history would "
                                  "shrink:\n  " + "\n  ".join(lost) + "\nReplace the files with "
                                  "good copies, or rerun with --allow-shrink.")
            ok, failures = attempt()
    if ok and local:
        with connect(read_only=False) as c:
            if shrinks:
                record_shrink(c, shrinks, " ".join(["nev-battery", *sys.argv[1:]]))
                notes.append(f"history shrank with consent (--allow-shrink): {len(shrinks)} "
                             f"finding(s) recorded in {SHRINK_TABLE}")
            save_state(c, state, days, corrupt)
            notes += soh_notes(c)
    return BuildResult(ok, time.perf_counter() - t0, days, failures, notes)


def _remember_corrupt(con: duckdb.DuckDBPyConnection, state: LandingState,
                      corrupt: dict[str, str]) -> None:
    """Keep the quarantine of corrupt files at once, even if the repeated run fails: a later run
    for any day must not trip over them again (the manifest is otherwise written only after a
    successful run)."""
    if state.manifest.empty and not _table_exists(con, STATE_TABLE):
        return  # no warehouse yet: written whole after the first successful run
    state.manifest = pd.concat([
        state.manifest[~state.manifest["file_path"].isin(list(corrupt))],
        _manifest_rows(state, state.audit[state.audit["file_path"].isin(list(corrupt))],
                       "corrupt_data", corrupt)], ignore_index=True)
    _write_manifest(con, state.manifest)


def soh_notes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Say so when the build has no SOH model: ads_vehicle_soh is then empty, not broken."""
    if not _table_exists(con, "dwd.dwd_soh_model"):
        return []
    if con.execute("select count(*) from dwd.dwd_soh_model").fetchall()[0][0]:
        return []
    n = (con.execute("select count(*) from dwd.dwd_capacity_observation "
                     "where capacity_reject_reason is null").fetchall()[0][0]
         if _table_exists(con, "dwd.dwd_capacity_observation") else 0)
    return [(f"no SOH model could be trained ({n} valid capacity observation(s); see vars "
            "soh_min_training_observations / soh_min_training_vehicles): ads_vehicle_soh is "
            "empty until a later build trains one (nev-battery build --retrain-soh)")]


def daily_batch(run_date: date, lookback_days: int = 0) -> list[str]:
    """The run date, the look-back window, and every partition with a new, changed or vanished
    file since the last successful run."""
    window = {str(run_date - timedelta(days=i)) for i in range(lookback_days + 1)}
    root = landing_root()
    check_landing_root(root)
    path = duckdb_path()
    con = connect() if path.exists() else None
    try:
        state = landing_state(root, con)
        window |= state.changed_partitions() if con is not None else set(state.partition_dates())
    finally:
        if con is not None:
            con.close()
    return sorted(window)


def backfill_batch(start: date, end: date) -> list[str]:
    return [str(start + timedelta(days=i)) for i in range((end - start).days + 1)]


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
    if "dws.dws_vehicle_reject" in rows:
        out["master_rejects"] = con.execute("""
            select reason_code, count(*), string_agg(distinct source_vin, ', ')
            from dws.dws_vehicle_reject group by all order by 1
        """).fetchall()
    from .ingest import rejected_counts

    out["rejected_frames"] = rejected_counts(landing_root())
    out["notes"] = soh_notes(con)
    if _table_exists(con, SHRINK_TABLE):
        out["notes"] += [f"history shrank with consent on {t:%Y-%m-%d %H:%M} ({c}): {f}"
                         for t, c, f in con.execute(f"select * from {SHRINK_TABLE} "
                                                    "order by 1").fetchall()]
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
    if s.get("rejected_frames"):
        lines.append("GB/T 32960 frames rejected by the ingest job (landing gbt32960_rejected/), "
                     "by reason:")
        for reason, n in s["rejected_frames"]:
            lines.append(f"  {reason:<32} {n:>10,}")
    if s.get("master_rejects"):
        lines.append("vehicle master rows rejected (dws.dws_vehicle_reject):")
        for reason, n, vins in s["master_rejects"]:
            lines.append(f"  {reason:<32} {n:>6,}  {vins}")
    for note in s.get("notes", []):
        lines.append(f"NOTE: {note}")
    return "\n".join(lines)
