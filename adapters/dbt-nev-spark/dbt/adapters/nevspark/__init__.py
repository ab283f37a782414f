"""dbt adapter `nevspark`: dbt-spark, plus dbt Python models on open-source Apache Spark.

dbt-spark submits Python models only to Databricks clusters. This plugin extends dbt-spark the
way dbt-databricks does, through dbt's own plugin mechanism: an adapter subclass whose extra
submission method `spark_connect` runs the model's code in the dbt process against a Spark
Connect session (Spark >= 3.4, a `sc://` URL), so the DataFrame work runs on the cluster. SQL
goes through dbt-spark's connection (thrift, http or odbc) unchanged, and the parent's macros
are inherited (dependencies=["spark"]). Profile: `type: nevspark`, the usual dbt-spark fields,
and `spark_connect_url`.
"""

from dbt.adapters.base import AdapterPlugin
from dbt.adapters.nevspark.impl import (
    NevsparkAdapter,
    NevsparkConnectionManager,  # noqa: F401
    NevsparkCredentials,
)
from dbt.include import nevspark

Plugin = AdapterPlugin(
    adapter=NevsparkAdapter,  # type: ignore[arg-type]
    credentials=NevsparkCredentials,
    include_path=nevspark.PACKAGE_PATH,
    dependencies=["spark"],
)
