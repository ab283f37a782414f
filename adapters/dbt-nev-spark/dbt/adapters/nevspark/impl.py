from __future__ import annotations

import os
from dataclasses import dataclass

from dbt.adapters.base import PythonJobHelper
from dbt.adapters.nevspark.python_submissions import SparkConnectPythonJobHelper
from dbt.adapters.spark import SparkAdapter, SparkCredentials
from dbt.adapters.spark.connections import SparkConnectionManager

DEFAULT_CONNECT_URL = "sc://127.0.0.1:15002"


@dataclass
class NevsparkCredentials(SparkCredentials):
    # where Python models run: a Spark Connect endpoint of the same cluster/metastore
    spark_connect_url: str | None = None

    @property
    def type(self) -> str:
        return "nevspark"

    def _connection_keys(self) -> tuple[str, ...]:
        return (*super()._connection_keys(), "spark_connect_url")

    def connect_url(self) -> str:
        return self.spark_connect_url or os.environ.get("NEV_SPARK_CONNECT", DEFAULT_CONNECT_URL)


class NevsparkConnectionManager(SparkConnectionManager):
    TYPE = "nevspark"


class NevsparkAdapter(SparkAdapter):
    ConnectionManager = NevsparkConnectionManager

    @classmethod
    def type(cls) -> str:
        return "nevspark"

    @property
    def default_python_submission_method(self) -> str:
        return "spark_connect"

    @property
    def python_submission_helpers(self) -> dict[str, type[PythonJobHelper]]:
        return {**super().python_submission_helpers, "spark_connect": SparkConnectPythonJobHelper}
