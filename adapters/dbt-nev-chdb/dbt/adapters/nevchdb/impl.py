from __future__ import annotations

import os
from dataclasses import dataclass

from dbt.adapters.clickhouse import ClickHouseAdapter, ClickHouseCredentials
from dbt.adapters.clickhouse.connections import ClickHouseConnectionManager, retryable_exceptions
from dbt.adapters.clickhouse.logger import logger
from dbt.adapters.nevchdb.chdbclient import ChdbClient

DEFAULT_PATH = "warehouse/chdb"


@dataclass
class NevchdbCredentials(ClickHouseCredentials):
    # the chdb data directory (databases and MergeTree parts), instead of a server's host/port
    path: str = ""
    # no server: the host only names the connection in dbt's logs
    host: str = "chdb"

    @property
    def type(self) -> str:
        return "nevchdb"

    @property
    def unique_field(self) -> str:
        return self.path

    def __post_init__(self):
        super().__post_init__()
        self.path = self.path or os.environ.get("NEV_CHDB_PATH", DEFAULT_PATH)
        self.driver = "chdb"

    def _connection_keys(self) -> tuple[str, ...]:
        return ("path", "schema", "custom_settings", "check_exchange", "use_lw_deletes")


class NevchdbConnectionManager(ClickHouseConnectionManager):
    TYPE = "nevchdb"

    @classmethod
    def open(cls, connection):
        if connection.state == "open":
            return connection
        credentials = cls.get_credentials(connection.credentials)
        return cls.retry_connection(
            connection,
            connect=lambda: ChdbClient(credentials),
            logger=logger,
            retry_limit=credentials.retries,
            retryable_exceptions=retryable_exceptions,
        )


class NevchdbAdapter(ClickHouseAdapter):
    ConnectionManager = NevchdbConnectionManager

    @classmethod
    def type(cls) -> str:
        return "nevchdb"
