"""dbt adapter `nevchdb`: dbt-clickhouse on chdb, the ClickHouse engine in-process.

dbt-clickhouse talks to a ClickHouse server over HTTP (clickhouse-connect) or the native
protocol. This plugin extends it through dbt's own plugin mechanism, as dbt-nev-spark extends
dbt-spark: the credentials name a chdb data directory instead of a host, and the client wrapper
runs every statement on a `chdb.session.Session` opened on that directory. Everything else, the
relation and column classes, the adapter methods and all macros and materializations (table,
incremental insert_overwrite / delete+insert / microbatch, tests), is dbt-clickhouse's, inherited
(dependencies=["clickhouse"]). Profile: `type: nevchdb`, `path: <data dir>`, `schema`, and
dbt-clickhouse's `custom_settings`.
"""

from dbt.adapters.base import AdapterPlugin
from dbt.adapters.nevchdb.impl import (
    NevchdbAdapter,
    NevchdbConnectionManager,  # noqa: F401
    NevchdbCredentials,
)
from dbt.include import nevchdb

Plugin = AdapterPlugin(
    adapter=NevchdbAdapter,  # type: ignore[arg-type]
    credentials=NevchdbCredentials,
    include_path=nevchdb.PACKAGE_PATH,
    dependencies=["clickhouse"],
)
