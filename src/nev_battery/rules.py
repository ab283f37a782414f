"""Warning and cleaning rules: the embedded dbt seeds, or a MySQL/MariaDB database.

Three tables, the same schema in both places (``seeds/*.csv`` and the database):

* ``warning_rules``        threshold rules of the early-warning engine (dwd_rule_episode);
* ``signal_range_limits``  plausibility limits of the DWS cleaning;
* ``detector_settings``    the statistical detectors' settings (dbt vars of the same names).

A run reads the rules once, before dbt runs (``resolve_rules``): from MySQL when ``NEV_RULES_URL``
is set, else from the seeds. The rows are validated first (a bad row is refused by table, row,
key and column, with the remedy: ``RulesError``, exit code 2), and their content hash is the
*rules version* every warning row records. Rules read from MySQL reach dbt as a snapshot in the
run's vars (macro ``rules_relation``): one consistent set for the whole run, on every engine,
without a connector or a jar on the engine's side. The dbt model ``dws_rules_history`` keeps
every change (rule, column, old and new value, when the run saw it).

The rules version is the first 16 hex digits of the MD5 of a canonical text of the three tables
(``canonical_text``); the macro ``rules_content_hash`` computes the same text in Jinja for a
plain ``dbt build`` on the seeds.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

from .warehouse import PROJECT_DIR, WarehouseError

SEEDS_DIR = PROJECT_DIR / "seeds"
RULES_URL_ENV = "NEV_RULES_URL"

# column -> type (s string, d double, i integer, b boolean), in the seeds' column order; the
# first column is the key
TABLES: dict[str, dict[str, str]] = {
    "warning_rules": {
        "rule_id": "s", "warning_type": "s", "metric": "s", "operator": "s", "threshold": "d",
        "min_duration_s": "d", "level": "i", "chemistry": "s", "vehicle_model": "s",
        "enabled": "b", "description": "s",
    },
    "signal_range_limits": {
        "signal": "s", "column_name": "s", "field_name": "s", "is_array": "b", "min_value": "d",
        "max_value": "d", "unit": "s", "action": "s", "description": "s",
    },
    "detector_settings": {"setting": "s", "value": "d", "description": "s"},
}
# columns that may be empty (all others must hold a value)
NULLABLE = {"description", "unit"}
MYSQL_TYPES = {"s": "VARCHAR(255)", "d": "DOUBLE", "i": "INT", "b": "BOOLEAN"}
TYPE_NAMES = {"s": "text", "d": "a number", "i": "a whole number", "b": "true or false"}

# the frame metrics a rule may test: macro warning_rule_metrics (macros/warning_rules.sql)
METRICS = ("max_temp_c", "min_temp_c", "temp_diff_c", "temp_rise_c_per_s", "max_cell_voltage_v",
           "min_cell_voltage_v", "cell_voltage_spread_v", "insulation_ohm_per_v", "soc_jump_pct",
           "total_voltage_v", "total_current_a", "soc_pct")
OPERATORS = (">=", ">", "<=", "<")
ACTIONS = ("null_field", "reject_row")
# the signals whose columns the cleaning knows (seeds/signal_range_limits.csv as shipped)
ARRAY_FIELDS = ("cell_voltages", "probe_temps")


class RulesError(WarehouseError):
    """Rule rows refused before any model ran (the message names each bad row and the remedy)."""

    exit_code = 2


def known_settings() -> dict[str, object]:
    """The detector settings (dbt vars of dbt_project.yml) a detector_settings row may set, with
    their defaults: detector_*, the false-alarm budget and the calibration / merge settings."""
    vars_ = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    names = ("detector_", "warning_budget_l2_per_1000", "rule_calibration_window_days",
             "rule_routine_min_vehicles", "warning_merge_gap_h")
    return {k: v for k, v in vars_.items() if k.startswith(names)}


# --- typed values and the canonical text ------------------------------------------------------

_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f"}


def _convert(value, kind: str):
    """A raw value (CSV text or a database value) as its column type; ValueError if it is not."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if kind == "s":
        if not isinstance(value, str):
            raise ValueError
        return value
    if kind == "b":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError
    if isinstance(value, bool):
        raise TypeError
    number = float(value) if not isinstance(value, str) else float(value.strip())
    if not math.isfinite(number):
        raise ValueError
    if kind == "i":
        if not number.is_integer():
            raise ValueError
        return int(number)
    return number


def fmt(value, kind: str) -> str:
    """A typed value in the canonical text (and in pulled CSVs): numbers by %.12g, booleans
    true/false, null as \\N. The macro rules_content_hash formats the same way."""
    if value is None:
        return "\\N"
    if kind == "d":
        return f"{value:.12g}"
    if kind == "i":
        return f"{value:d}"
    if kind == "b":
        return "true" if value else "false"
    return value


@dataclass
class RuleSet:
    """The validated rules of one run."""

    source: str                                     # 'seed' or 'mysql'
    tables: dict[str, list[dict]]                   # typed rows, sorted by key
    origin: str = ""                                # the folder or the URL without password
    overrides: dict[str, object] = field(default_factory=dict)

    def settings(self) -> dict[str, object]:
        """detector_settings as dbt vars: whole numbers as int (rendered as the vars' defaults)."""
        out = {}
        for r in self.tables["detector_settings"]:
            v = r["value"]
            out[r["setting"]] = int(v) if float(v).is_integer() else v
        return out

    def with_overrides(self, extra_vars: dict) -> RuleSet:
        """The rules as the run uses them: a --var naming a detector setting wins over the table
        (and so counts in the version)."""
        over = {k: v for k, v in extra_vars.items() if k in known_settings()}
        if not over:
            return self
        rows = {r["setting"]: dict(r) for r in self.tables["detector_settings"]}
        for k, v in over.items():
            try:
                value = _convert(v, "d")
            except (ValueError, TypeError):
                value = None
            if value is None:
                raise RulesError(f"--var {k}={v!r}: a detector setting takes a number")
            rows.setdefault(k, {"setting": k, "value": None, "description": None})
            rows[k]["value"] = value
        tables = dict(self.tables, detector_settings=[rows[k] for k in sorted(rows)])
        return RuleSet(self.source, tables, self.origin, over)

    @property
    def version(self) -> str:
        return hashlib.md5(canonical_text(self.tables).encode()).hexdigest()[:16]

    def dbt_vars(self) -> dict:
        """The vars a dbt run gets: the version, the source, the detector settings, and (rules
        from MySQL) the snapshot of the rule tables that macro rules_relation renders."""
        out = {"rules_source": self.source, "rules_version": self.version, **self.settings()}
        if self.source == "mysql":
            out["rules_snapshot"] = {
                t: [{c: r[c] for c in TABLES[t]} for r in self.tables[t]]
                for t in TABLES}
        return out


def canonical_text(tables: dict[str, list[dict]]) -> str:
    """One line per row: table|value|value..., rows sorted by key, tables in TABLES order."""
    lines = []
    for t, cols in TABLES.items():
        key = next(iter(cols))
        for r in sorted(tables[t], key=lambda r: r[key]):
            lines.append("|".join([t, *(fmt(r.get(c), k) for c, k in cols.items())]))
    return "\n".join(lines)


# --- validation -------------------------------------------------------------------------------

def validate(raw: dict[str, list[dict]], origin: str) -> dict[str, list[dict]]:
    """Typed rows of the three tables, or RulesError naming every bad row: table, row number,
    key, column, what is wrong and the remedy."""
    problems: list[str] = []
    out: dict[str, list[dict]] = {}
    settings = known_settings()
    for t, cols in TABLES.items():
        rows = raw.get(t)
        if rows is None:
            problems.append(f"{t}: table missing")
            continue
        key = next(iter(cols))
        if rows:
            got = list(rows[0])
            missing = [c for c in cols if c not in got]
            extra = [c for c in got if c not in cols]
            if missing or extra:
                problems.append(f"{t}: columns differ from the seed's ("
                                + "; ".join(filter(None, [
                                    missing and "missing " + ", ".join(missing),
                                    extra and "unknown " + ", ".join(extra)]))
                                + f"); expected {', '.join(cols)}")
                continue
        elif t != "detector_settings":
            problems.append(f"{t}: no rows (an empty rule table would silently switch the "
                            "checks off)")
            continue
        typed, seen = [], {}
        for n, r in enumerate(rows, start=1):
            rid = r.get(key)
            where = f"{t} row {n} ({key} {rid!r})"
            row, bad = {}, False
            for c, kind in cols.items():
                try:
                    row[c] = _convert(r.get(c), kind)
                except (ValueError, TypeError):
                    problems.append(f"{where}: column {c} is {r.get(c)!r}, not {TYPE_NAMES[kind]}")
                    bad = True
                    continue
                if row[c] is None and c not in NULLABLE:
                    problems.append(f"{where}: column {c} is empty")
                    bad = True
            if row.get(key) is not None:
                if row[key] in seen:
                    problems.append(f"{where}: duplicate {key} {row[key]!r} (also row "
                                    f"{seen[row[key]]}); a {key} names one row")
                    bad = True
                seen.setdefault(row[key], n)
            if not bad:
                problems += [f"{where}: {p}" for p in _check_row(t, row, settings)]
            typed.append(row)
        out[t] = sorted(typed, key=lambda r: str(r[key]))
    if problems:
        raise RulesError(f"rules from {origin} refused ({len(problems)} problem(s)); nothing "
                         "was run:\n  " + "\n  ".join(problems) + "\nCorrect the rows (`nev-"
                         "battery rules check` validates them without running) and run again.")
    return out


def _check_row(table: str, r: dict, settings: dict) -> list[str]:
    out = []
    if table == "warning_rules":
        if r["metric"] not in METRICS:
            out.append(f"column metric: unknown metric {r['metric']!r} (known: "
                       f"{', '.join(METRICS)})")
        if r["operator"] not in OPERATORS:
            out.append(f"column operator: unknown operator {r['operator']!r} "
                       f"({', '.join(OPERATORS)})")
        if r["level"] not in (1, 2, 3):
            out.append(f"column level: {r['level']} is outside 1-3 (1 notice, 2 inspect soon, "
                       "3 act now)")
        if r["min_duration_s"] < 0:
            out.append(f"column min_duration_s: {r['min_duration_s']:g} is negative (0 = one "
                       "frame)")
    elif table == "signal_range_limits":
        if r["action"] not in ACTIONS:
            out.append(f"column action: unknown action {r['action']!r} ({', '.join(ACTIONS)})")
        if r["min_value"] > r["max_value"]:
            out.append(f"columns min_value/max_value: {r['min_value']:g} > {r['max_value']:g}")
        if r["is_array"] and r["field_name"] not in ARRAY_FIELDS:
            out.append(f"column field_name: {r['field_name']!r} is not an array field "
                       f"({', '.join(ARRAY_FIELDS)})")
    elif r["setting"] not in settings:
        out.append(f"column setting: unknown setting {r['setting']!r} (the detector vars of "
                   "dbt_project.yml: " + ", ".join(sorted(settings)) + ")")
    return out


# --- the seeds --------------------------------------------------------------------------------

def read_seed_csvs(folder: Path = SEEDS_DIR) -> dict[str, list[dict]]:
    out = {}
    for t in TABLES:
        path = Path(folder) / f"{t}.csv"
        if not path.exists():
            out[t] = None
            continue
        with path.open(newline="") as f:
            out[t] = list(csv.DictReader(f))
    return out


def write_seed_csvs(tables: dict[str, list[dict]], folder: Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, cols in TABLES.items():
        path = folder / f"{t}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(list(cols))
            for r in tables[t]:
                w.writerow(["" if r[c] is None else fmt(r[c], k) for c, k in cols.items()])
        paths.append(path)
    return paths


def load_seeds(folder: Path = SEEDS_DIR) -> RuleSet:
    return RuleSet("seed", validate(read_seed_csvs(folder), f"the seeds in {folder}"), str(folder))


# --- MySQL / MariaDB --------------------------------------------------------------------------

def redact(url: str) -> str:
    u = urlparse(url)
    if u.password is None:
        return url
    return url.replace(f":{u.password}@", ":***@", 1)


def connect_mysql(url: str):
    """A PyMySQL connection from mysql://user:password@host:port/database (also mysql+pymysql://,
    as SQLAlchemy writes it)."""
    import pymysql

    u = urlparse(url)
    if u.scheme not in ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql"):
        raise RulesError(f"rules URL {redact(url)}: expected mysql://user:password@host:port/"
                         f"database (set {RULES_URL_ENV} or --url)")
    db = u.path.lstrip("/")
    if not db:
        raise RulesError(f"rules URL {redact(url)} names no database: mysql://host:3306/DATABASE")
    try:
        return pymysql.connect(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                               user=unquote(u.username or "root"),
                               password=unquote(u.password or ""), database=db,
                               charset="utf8mb4", connect_timeout=10, autocommit=False)
    except pymysql.err.MySQLError as e:
        raise RulesError(f"cannot read the rules from {redact(url)}: {e}; check the server and "
                         f"the URL ({RULES_URL_ENV}), or unset {RULES_URL_ENV} to use the seeds"
                         ) from None


def read_mysql(url: str) -> dict[str, list[dict]]:
    import pymysql

    out = {}
    con = connect_mysql(url)
    try:
        with con.cursor(pymysql.cursors.DictCursor) as cur:
            for t, spec in TABLES.items():
                try:
                    cur.execute(f"select * from `{t}`")
                except pymysql.err.ProgrammingError:
                    out[t] = None
                    continue
                rows = list(cur.fetchall())
                if not rows:
                    # the columns of an empty table, for the schema check
                    cols = [d[0] for d in cur.description]
                    if cols != list(spec):
                        rows = [dict.fromkeys(cols)]
                out[t] = rows
    finally:
        con.close()
    missing = [t for t, rows in out.items() if rows is None]
    if missing:
        raise RulesError(f"rules database {redact(url)} has no table {', '.join(missing)}: "
                         "create them from the seeds with `nev-battery rules push --url ...`")
    return out


def load_mysql(url: str) -> RuleSet:
    return RuleSet("mysql", validate(read_mysql(url), redact(url)), redact(url))


def push_mysql(url: str, rules: RuleSet) -> dict[str, int]:
    """Replace the database's rule tables by these rules (created with the seeds' schema when
    missing), in one transaction."""
    con = connect_mysql(url)
    counts = {}
    try:
        with con.cursor() as cur:
            for t, cols in TABLES.items():
                key = next(iter(cols))
                defs = ", ".join(
                    f"`{c}` {'TEXT' if c == 'description' else MYSQL_TYPES[k]}"
                    + ("" if c in NULLABLE else " NOT NULL") for c, k in cols.items())
                cur.execute(f"create table if not exists `{t}` ({defs}, primary key (`{key}`))")
            for t, cols in TABLES.items():
                cur.execute(f"delete from `{t}`")
                if rules.tables[t]:
                    cur.executemany(
                        f"insert into `{t}` ({', '.join(f'`{c}`' for c in cols)}) values "
                        f"({', '.join(['%s'] * len(cols))})",
                        [tuple(r[c] for c in cols) for r in rules.tables[t]])
                counts[t] = len(rules.tables[t])
        con.commit()
    except Exception:
        con.rollback()
        raise
    finally:
        con.close()
    return counts


# --- the rules of a run -----------------------------------------------------------------------

def rules_url() -> str | None:
    return os.environ.get(RULES_URL_ENV) or None


def resolve_rules(extra_vars: dict | None = None) -> RuleSet:
    """The validated rules of a run: MySQL when NEV_RULES_URL is set, else the seeds; a run's
    --var rules_source=seed uses the seeds even then."""
    extra_vars = extra_vars or {}
    url = rules_url()
    if url and extra_vars.get("rules_source", "mysql") != "seed":
        rules = load_mysql(url)
    else:
        rules = load_seeds()
    return rules.with_overrides(extra_vars)
