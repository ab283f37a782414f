{#- The incremental configuration of a model whose unit of rebuild is a day (`date_column`),
    per target: DuckDB replaces whole days (delete+insert on the day; with `deletes_first` the
    model's pre-hook empties the rebuilt days itself and appends, so that an emptied day is
    emptied too); Spark has no DELETE on parquet tables and overwrites the day partitions a run
    writes (insert_overwrite, dynamic partition overwrite). -#}
{% macro day_incremental(date_column, deletes_first=false) -%}
    {%- if target.type in ('spark', 'nevspark') -%}
        {{ return({'materialized': 'incremental', 'incremental_strategy': 'insert_overwrite',
                   'partition_by': [date_column], 'file_format': 'parquet',
                   'on_schema_change': 'fail'}) }}
    {%- elif deletes_first -%}
        {{ return({'materialized': 'incremental', 'incremental_strategy': 'append',
                   'on_schema_change': 'fail'}) }}
    {%- else -%}
        {{ return({'materialized': 'incremental', 'incremental_strategy': 'delete+insert',
                   'unique_key': date_column, 'on_schema_change': 'fail'}) }}
    {%- endif -%}
{%- endmacro %}
