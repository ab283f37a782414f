"""dbt adapter `nev_spark`: dbt-spark, plus dbt Python models on open-source Apache Spark.

dbt-spark submits Python models only to Databricks clusters. This plugin extends dbt-spark the
way dbt-databricks does, through dbt's own plugin mechanism: an adapter subclass whose extra
submission method `spark_connect` runs the model's code in the dbt process against a Spark
Connect session (Spark >= 3.4, a `sc://` URL), so the DataFrame work runs on the cluster. SQL
goes through dbt-spark's connection (thrift, http or odbc) unchanged, and the parent's macros
are inherited (dependencies=["spark"]). Profile: `type: nev_spark`, the usual dbt-spark fields,
and `spark_connect_url`.
"""

from dbt.adapters.base import AdapterPlugin

from dbt.adapters.nev_spark.impl import (
    NevSparkAdapter,
    NevSparkConnectionManager,  # noqa: F401
    NevSparkCredentials,
)
from dbt.include import nev_spark

Plugin = AdapterPlugin(
    adapter=NevSparkAdapter,  # type: ignore[arg-type]
    credentials=NevSparkCredentials,
    include_path=nev_spark.PACKAGE_PATH,
    dependencies=["spark"],
)
