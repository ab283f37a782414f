{#- The incremental configuration of a model whose unit of rebuild is a day (`date_column`),
    per target: DuckDB replaces whole days in one transaction (materialization day_replace:
    the batch days are deleted, or with `deletes_first` the model's pre-hook deletes the rebuilt
    days itself, so that an emptied day is emptied too; then the rows are inserted); Spark has no
    DELETE on parquet tables and overwrites the day partitions a run writes (insert_overwrite,
    dynamic partition overwrite). -#}
{% macro day_incremental(date_column, deletes_first=false) -%}
    {%- if target.type in ('spark', 'nevspark') -%}
        {{ return({'materialized': 'incremental', 'incremental_strategy': 'insert_overwrite',
                   'partition_by': [date_column], 'file_format': 'parquet',
                   'on_schema_change': 'fail'}) }}
    {%- else -%}
        {{ return({'materialized': 'day_replace', 'date_column': date_column,
                   'replace_batch_days': not deletes_first}) }}
    {%- endif -%}
{%- endmacro %}
