{#- nevchdb inherits every dbt-clickhouse macro and materialization (dependencies=["clickhouse"]):
    the point of the adapter is to run exactly those on the ClickHouse engine of chdb. Nothing is
    overridden here; a macro of the same name in this folder would win over the parent's. -#}
