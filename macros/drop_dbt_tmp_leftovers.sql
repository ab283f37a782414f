{#- Drops the staging tables that incremental Python models leave in the warehouse
    (<model>__dbt_tmp<timestamp>; dbt-duckdb creates them for the merge and does not drop them).
    On-run-end hook: runs after every invocation, once all models are done. DuckDB only (the
    other adapters clean up after themselves or keep their staging in temporary views). -#}
{% macro drop_dbt_tmp_leftovers() -%}
    {%- if not execute or target.type != 'duckdb' -%}{{ return('') }}{%- endif -%}
    {%- set query -%}
        select table_schema, table_name
        from information_schema.tables
        where table_catalog = current_database() and contains(table_name, '__dbt_tmp')
    {%- endset -%}
    {%- for row in run_query(query).rows -%}
        {%- do run_query('drop table if exists "' ~ row[0] ~ '"."' ~ row[1] ~ '"') -%}
    {%- endfor -%}
    {{ return('') }}
{%- endmacro %}
