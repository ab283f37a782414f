{#- Materialization day_replace (DuckDB): a table whose unit of rebuild is a day.

    A first build or --full-refresh creates the table from the query. An incremental run, in
    ONE transaction: deletes the rebuilt days (config replace_batch_days: the batch days of
    date_column; otherwise the model's pre-hook deletes them, dwd_delete_rebuilt_days), then
    inserts the query's rows straight into the table. dbt-duckdb's incremental materialization
    writes the rows twice instead (a temporary table, then the insert from it): for the ten
    million rows of a large fleet's day in dws_realtime_checked that second write is seconds of
    the daily run. A run that fails anywhere rolls back: the table keeps the days it had.

    on_schema_change is always fail: the query's columns (bound, not run: DESCRIBE) must equal
    the table's, names and types; otherwise the run stops naming the differing columns. -#}
{% materialization day_replace, adapter='duckdb' %}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set rebuild = existing_relation is none or not existing_relation.is_table or should_full_refresh() -%}
    {%- set grant_config = config.get('grants') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    -- BEGIN happens here
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if rebuild -%}
        {%- if existing_relation is not none -%}
            {#- DuckDB's DDL is transactional: the old table stays until the commit -#}
            {%- do adapter.drop_relation(existing_relation) -%}
        {%- endif -%}
        {%- set build_sql = create_table_as(False, target_relation, compiled_code) -%}
    {%- else -%}
        {%- do day_replace_check_columns(target_relation, compiled_code) -%}
        {%- if config.get('replace_batch_days', false) -%}
            {% call statement('delete_rebuilt_days') -%}
                delete from {{ target_relation }} where {{ batch_filter(config.require('date_column')) }}
            {%- endcall %}
        {%- endif -%}
        {%- set build_sql -%}
            insert into {{ target_relation }} by name
            {{ compiled_code }}
        {%- endset -%}
    {%- endif -%}

    {% call statement('main') -%}
        {{ build_sql }}
    {%- endcall %}

    {%- do apply_grants(target_relation, grant_config, should_revoke=should_revoke(existing_relation, rebuild)) -%}
    {%- do persist_docs(target_relation, model) -%}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    -- COMMIT happens here
    {%- do adapter.commit() -%}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#- Stops the run when the query's columns differ from the table's (names or types). -#}
{% macro day_replace_check_columns(relation, query) -%}
    {%- set described = run_query('describe ' ~ query) -%}
    {%- set want = {} -%}
    {%- for row in described.rows -%}{%- do want.update({row[0]: row[1] | upper}) -%}{%- endfor -%}
    {%- set have = {} -%}
    {%- for col in adapter.get_columns_in_relation(relation) -%}
        {%- do have.update({col.name: col.dtype | upper}) -%}
    {%- endfor -%}
    {%- set diff = [] -%}
    {%- for name in (want.keys() | list + have.keys() | list) | unique | sort -%}
        {%- if want.get(name) != have.get(name) -%}
            {%- do diff.append(name ~ ': table ' ~ have.get(name, 'missing') ~ ', query ' ~ want.get(name, 'missing')) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if diff -%}
        {{ exceptions.raise_compiler_error(
            'model ' ~ model.name ~ ': the columns of the query differ from table ' ~ relation
            ~ ' (' ~ diff | join('; ') ~ '); rebuild it with --full-refresh') }}
    {%- endif -%}
{%- endmacro %}

{#- is_incremental() for the day models: dbt's own is true only for the materialization
    'incremental'; a day_replace model is incremental when its table exists and no full refresh
    was asked for. -#}
{% macro day_model_is_incremental() -%}
    {%- if model.config.materialized != 'day_replace' -%}
        {{ return(is_incremental()) }}
    {%- endif -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(this.database, this.schema, this.table) -%}
    {{ return(relation is not none and relation.type == 'table' and not should_full_refresh()) }}
{%- endmacro %}
