"""dbt-clickhouse's client wrapper on a chdb session instead of a server connection."""

from __future__ import annotations

import json
import os
import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dbt.adapters.clickhouse import ClickHouseColumn
from dbt.adapters.clickhouse.dbclient import ChClientWrapper
from dbt.adapters.clickhouse.util import hide_stack_trace
from dbt.adapters.exceptions import FailedToConnectError
from dbt_common.exceptions import DbtDatabaseError

# The wrapper's connection settings that are not ClickHouse settings but HTTP-interface
# parameters of clickhouse-connect (a chdb session is its own session).
NOT_SETTINGS = {"session_id"}

# JSONCompact, with numbers as JSON numbers and decimals as strings (exact), so that result
# values can be typed from the column types in its `meta`.
OUTPUT_SETTINGS = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_64bit_floats": 0,
    "output_format_json_quote_decimals": 1,
    "output_format_json_quote_denormals": 0,
}

# chdb runs one embedded server per process, on one data directory; sessions on that directory
# share it (each with its own settings), a session on another directory is refused.
_open_lock = threading.Lock()


def _base_type(ch_type: str) -> str:
    t = ch_type
    for wrapper in ("LowCardinality(", "Nullable("):
        while t.startswith(wrapper):
            t = t[len(wrapper):-1]
    return t


def _converter(ch_type: str):
    t = _base_type(ch_type)
    if t.startswith("Date32") or t == "Date":
        return date.fromisoformat
    if t.startswith("DateTime"):
        return datetime.fromisoformat
    if t.startswith("Decimal"):
        return Decimal
    return None


class ChdbResult:
    """What dbt-clickhouse reads of a clickhouse-connect QueryResult: rows and column names."""

    def __init__(self, column_names: list[str], column_types: list[str], rows: list[tuple]):
        self.column_names = column_names
        self.column_types = column_types
        self.result_set = rows
        self.result_rows = rows


def _parse(payload: bytes) -> ChdbResult:
    if not payload.strip():  # DDL and inserts return no result
        return ChdbResult([], [], [])
    doc = json.loads(payload)
    names = [c["name"] for c in doc["meta"]]
    types = [c["type"] for c in doc["meta"]]
    convs = [_converter(t) for t in types]
    rows = [tuple(v if (f is None or v is None) else f(v) for f, v in zip(convs, row, strict=True))
            for row in doc["data"]]
    return ChdbResult(names, types, rows)


class ChdbClient(ChClientWrapper):
    """Runs dbt-clickhouse's statements on `chdb.session.Session(path)`.

    dbt-clickhouse's wrapper (the parent) keeps connection settings, ensures the database,
    probes the server version, lightweight deletes and EXCHANGE TABLES through the methods below,
    so the probes run against chdb's engine exactly as against a server."""

    def _create_client(self, credentials):
        import chdb
        from chdb.session import Session

        path = os.path.abspath(os.path.expanduser(credentials.path))
        os.makedirs(path, exist_ok=True)
        with _open_lock:
            try:
                session = Session(path)
            except Exception as ex:  # chdb raises RuntimeError with the engine's message
                raise FailedToConnectError(
                    f"chdb {chdb.__version__}: cannot open the data directory {path}: {ex} "
                    "(another process holding it, or another chdb directory open in this "
                    "process?)") from ex
        self._path = path
        self._session = session
        for key, value in {**self._conn_settings, **OUTPUT_SETTINGS}.items():
            if key not in NOT_SETTINGS:
                self._run(f"SET {key} = {_literal(value)}")
        return session

    def _run(self, sql: str) -> bytes:
        try:
            res = self._session.query(sql, "JSONCompact")
        except Exception as ex:
            raise DbtDatabaseError(hide_stack_trace(ex)) from ex
        return res.bytes()

    def _with_settings(self, sql: str, settings: dict | None) -> ChdbResult:
        """One statement with per-query settings: SET them, run, set the previous values back."""
        settings = {k: v for k, v in (settings or {}).items() if k not in NOT_SETTINGS
                    and k != "query_id"}
        previous = {}
        for key in settings:
            (value,) = _parse(self._run(f"SELECT getSetting('{key}')")).result_set[0]
            previous[key] = value
        try:
            for key, value in settings.items():
                self._run(f"SET {key} = {_literal(value)}")
            return _parse(self._run(sql))
        finally:
            for key, value in previous.items():
                self._run(f"SET {key} = {_literal(value)}")

    def query(self, sql: str, **kwargs) -> ChdbResult:
        kwargs.pop("query_id", None)  # a server's query log id; chdb has no query log to tag
        return self._with_settings(sql, kwargs.get("settings"))

    def command(self, sql: str, **kwargs) -> Any:
        # as clickhouse-connect's command(): one value alone, else the row's values, else None
        res = self.query(sql, **kwargs)
        if not res.result_set:
            return None
        row = res.result_set[0]
        return row[0] if len(row) == 1 and len(res.result_set) == 1 else list(row)

    def columns_in_query(self, sql: str, **kwargs) -> list[ClickHouseColumn]:
        res = self.query(f"SELECT * FROM ( \n{sql} \n) LIMIT 0", **kwargs)
        return [ClickHouseColumn.create(n, t)
                for n, t in zip(res.column_names, res.column_types, strict=True)]

    def get_ch_setting(self, setting_name):
        res = self.query("SELECT value, readonly FROM system.settings WHERE name = "
                         f"'{setting_name}'").result_set
        return (res[0][0], res[0][1]) if res else (None, 0)

    def close(self):
        session = getattr(self, "_session", None)
        if session is not None:
            session.close()
            self._session = None

    def _set_client_database(self):
        self._run(f"USE `{self.database}`")

    def _server_version(self):
        return self.command("SELECT version()")


def _literal(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    s = str(value)
    if s.lstrip("-").replace(".", "", 1).isdigit():
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
