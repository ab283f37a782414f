from __future__ import annotations

import traceback
from typing import Any

from dbt.adapters.base import PythonJobHelper
from dbt_common.exceptions import DbtRuntimeError


class SparkConnectPythonJobHelper(PythonJobHelper):
    """Runs a compiled dbt Python model against a Spark Connect session.

    The compiled code is the model plus dbt-spark's `py_write_table` epilogue, which expects a
    global `spark` and writes the returned DataFrame with saveAsTable in the model's
    file_format. Here `spark` is a Spark Connect session: the model's DataFrame operations
    (including groupBy().applyInPandas) execute on the Spark cluster, the Python driver code in
    the dbt process."""

    def __init__(self, parsed_model: dict, credentials: Any) -> None:
        self.parsed_model = parsed_model
        self.identifier = parsed_model["alias"]
        cfg = parsed_model.get("config", {})
        self.url = cfg.get("spark_connect_url") or credentials.connect_url()

    def submit(self, compiled_code: str) -> Any:
        from pyspark.sql import SparkSession

        # A new server-side session per model: a session caches table metadata (file listings),
        # and the upstream tables were just rewritten through the Thrift connection.
        try:
            spark = SparkSession.builder.remote(self.url).create()
        except Exception as e:
            raise DbtRuntimeError(f"cannot reach Spark Connect at {self.url}: {e}") from e
        namespace: dict[str, Any] = {"spark": spark, "__name__": f"dbt_model_{self.identifier}"}
        try:
            # running the compiled model is the point, as dbt-spark does on Databricks
            exec(compile(compiled_code, f"<dbt python model {self.identifier}>", "exec"),  # noqa: S102
                 namespace)
        except Exception as e:
            raise DbtRuntimeError(f"Python model {self.identifier} failed on Spark Connect:\n"
                                  f"{''.join(traceback.format_exception(e))}") from e
        finally:
            spark.stop()
        return None
