{#- The serving models' own guard: a served table is changed only by new data that is unique at
    its grain and holds exactly the rows the export wrote to the lake for the published months.
    nev-battery publish checks the lake before dbt runs (nev_battery.lake.check_lake: files the
    export did not write, duplicated keys); this is the same rule on the staging table dbt-clickhouse
    loaded, checked after the load and before the served table changes, so that a `dbt build`
    straight, a file put in the lake after the Python check, or a glob that matches more than the
    export's files on s3/hdfs cannot replace a partition with doubled or partial rows. -#}

{#- The grain of the model being built: the columns of its unique_combination_of_columns test
    (models/serving/_serving__models.yml), the one declaration its data test, this guard and the
    Python lake check share. -#}
{% macro serving_grain() -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'test' and node.test_metadata
           and node.test_metadata.name == 'unique_combination_of_columns'
           and node.attached_node == model.unique_id -%}
        {{- return(node.test_metadata.kwargs.combination_of_columns) -}}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("serving_guard: " ~ model.name ~ " has no unique_combination_of_columns test in models/serving/_serving__models.yml: a serving model declares its grain there, and a publish checks it before the served table changes") }}
{%- endmacro %}

{#- Rows per partition ('all' for a table served whole) of the staging table and of the lake
    files, among the rows the TTL keeps: the TTL may have dropped rows from the staging table
    already, which the lake still holds. One query, so that both sides see the same now(). The
    partition expression and the TTL are the model's own (config partition_by, ttl), evaluated on
    the lake's columns as on the staging table's. Returns {'loaded': {p: n}, 'exported': {p: n}}. -#}
{% macro serving_rows_by_partition(staging, lake) -%}
    {%- set part = config.get('partition_by') or "'all'" -%}
    {%- set ttl = config.get('ttl') -%}
    {%- set alive = ("(" ~ ttl ~ ") > now()") if ttl else "1 = 1" -%}
    {%- set res = run_query("select side, toString(p) as p, count() as n from ("
        ~ "select 'loaded' as side, " ~ part ~ " as p from " ~ staging ~ " where " ~ alive
        ~ " union all select 'exported' as side, " ~ part ~ " as p from " ~ lake ~ " where " ~ alive
        ~ ") group by side, p order by side, p") -%}
    {%- set out = {'loaded': {}, 'exported': {}} -%}
    {%- for row in res.rows -%}{%- do out[row[0]].update({row[1]: row[2] | int}) -%}{%- endfor -%}
    {{- return(out) -}}
{%- endmacro %}

{#- Raises, after dropping the staging table, when `staging` (the new data of this model, loaded
    and not yet moved into the served table) is not unique at the model's grain, or its rows per
    partition differ from the rows of the files the export wrote for the published months (lake_table
    exported_only: data_0.parquet / <table>.parquet, whose count ClickHouse reads from the Parquet
    footers; the rows the TTL drops aside, which read the date column). A raise here fails the
    model before REPLACE PARTITION / EXCHANGE TABLES: the served table stays as it was. -#}
{% macro serving_guard(staging) -%}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set grain = serving_grain() -%}
    {%- set keys = grain | join(', ') -%}
    {%- set problems = [] -%}
    {%- set dups = run_query("select toString(tuple(" ~ keys ~ ")) as k, count() as n, count() over () as dup_keys from "
        ~ staging ~ " group by " ~ keys ~ " having n > 1 order by n desc, k limit 3") -%}
    {%- if dups.rows | length > 0 -%}
        {%- set shown = [] -%}
        {%- for r in dups.rows -%}{%- do shown.append(r[0] ~ ' x' ~ (r[1] | int)) -%}{%- endfor -%}
        {%- do problems.append((dups.rows[0][2] | int) ~ " key(s) of the grain (" ~ keys ~ ") more than once, e.g. "
            ~ shown | join(', ') ~ " (a copied or rewritten lake file, or the ADS table itself: re-run nev-battery export for the months)") -%}
    {%- endif -%}
    {%- set ads_table = 'ads_' ~ this.identifier -%}
    {%- set partitioned = config.get('partition_by') is not none -%}
    {%- set rows = serving_rows_by_partition(staging, lake_table(ads_table, partitioned, exported_only=true)) -%}
    {%- set loaded, exported = rows['loaded'], rows['exported'] -%}
    {%- if loaded != exported -%}
        {%- set diff = [] -%}
        {%- for p in (loaded.keys() | list + exported.keys() | list) | unique | sort
            if loaded.get(p, 0) != exported.get(p, 0) -%}
            {%- do diff.append(p ~ ": " ~ loaded.get(p, 0) ~ " loaded vs " ~ exported.get(p, 0) ~ " exported") -%}
        {%- endfor -%}
        {%- do problems.append("other rows than the export's files hold (" ~ diff | join(', ') ~ "): the lake folders of "
            ~ ads_table ~ " hold files nev-battery export did not write (it writes data_0.parquet alone in a month folder, "
            ~ ads_table ~ ".parquet alone for a table exported whole): delete them; nev-battery publish names them") -%}
    {%- endif -%}
    {%- if problems -%}
        {%- do adapter.drop_relation(staging) -%}
        {{ exceptions.raise_compiler_error("serving_guard: " ~ this ~ " left unchanged: its new data (" ~ staging.identifier
            ~ ", dropped) has " ~ problems | join('; and ') ~ ". Then publish again.") }}
    {%- endif -%}
    {{- return('') -}}
{%- endmacro %}

{#- dbt-clickhouse's insert_overwrite (dbt-clickhouse 1.10.3, macros/materializations/incremental/
    incremental.sql) with one addition: serving_guard on the staging table between its load and
    REPLACE PARTITION. The strategy has no hook there (a pre-hook runs before the load, a post-hook
    after the replace), so the macro is overridden whole: a macro of the root project wins over the
    adapter's of the same name, for dbt-clickhouse (target clickhouse) and dbt-nev-chdb
    (clickhouse_local) alike. Keep it in step with the installed dbt-clickhouse when upgrading
    (requirements.lock pins it); everything but the guard call is the adapter's code. -#}
{% macro clickhouse__incremental_insert_overwrite(existing_relation, partition_by, is_distributed=False) %}
    {% set new_data_relation = existing_relation.incorporate(path={"identifier": existing_relation.identifier
       + '__dbt_new_data_' + invocation_id.replace('-', '_')}) %}
    {{ drop_relation_if_exists(new_data_relation) }}
    {%- set distributed_new_data_relation = existing_relation.incorporate(path={"identifier": existing_relation.identifier + '__dbt_distributed_new_data'}) -%}


    {%- set local_suffix = adapter.get_clickhouse_local_suffix() -%}
    {%- set local_db_prefix = adapter.get_clickhouse_local_db_prefix() -%}
    {% set existing_local = existing_relation.incorporate(path={"identifier": this.identifier + local_suffix, "schema": local_db_prefix + this.schema}) if existing_relation is not none else none %}

    {% if is_distributed %}
        {{ create_distributed_local_table(distributed_new_data_relation, new_data_relation, existing_relation, sql) }}
    {% else %}
        {% call statement('main') %}
            {{ get_create_table_as_sql(False, new_data_relation, sql) }}
        {% endcall %}
    {% endif %}

    {#- the one addition: the new data checked before any partition of the served table is replaced -#}
    {% do serving_guard(distributed_new_data_relation if is_distributed else new_data_relation) %}

    {# Get the parts from the cluster table, since the partitions between shards may not overlap due to distribution #}
    {% if execute %}
      {% set select_changed_partitions %}
          SELECT DISTINCT partition_id
          {% if is_distributed %}
            FROM cluster({{ adapter.get_clickhouse_cluster_name() }}, system.parts)
          {% else %}
            FROM system.parts
          {% endif %}
          WHERE active
            AND database = '{{ new_data_relation.schema }}'
            AND table = '{{ new_data_relation.identifier }}'
      {% endset %}
      {% set changed_partitions = run_query(select_changed_partitions).rows %}
    {% else %}
      {% set changed_partitions = [] %}
    {% endif %}

    {% if changed_partitions %}
        {% call statement('replace_partitions') %}
            {% if is_distributed %}
                alter table {{ existing_local }} {{ on_cluster_clause(existing_relation) }}
            {% else %}
                 alter table {{ existing_relation }}
            {% endif %}
            {%- for partition in changed_partitions %}
                replace partition id '{{ partition['partition_id'] }}'
                from {{ new_data_relation }}
                {{- ', ' if not loop.last }}
            {%- endfor %}
            {#- The strategy relies on REPLACE PARTITION from a source with no parts in the partition
                to clear shards that received no new data. ClickHouse 26.6+ refuses that by default,
                so opt back in. Older servers don't know the setting and would reject the query. -#}
            {%- if adapter.is_at_or_after_version('26.6') %}
                settings allow_replace_partition_from_empty_source = 1
            {%- endif %}
      {% endcall %}
    {% endif %}

    {% do adapter.drop_relation(distributed_new_data_relation) %}
    {% do adapter.drop_relation(new_data_relation) %}
{% endmacro %}

{#- The three tables served whole, and a --full-refresh of the month tables, build a new table and
    swap it in with EXCHANGE TABLES (dbt-clickhouse's table and incremental materializations, in an
    Atomic database, the default): the guard runs on the new table just before the swap, then the
    adapter's own macro (dbt.exchange_tables_atomic: the internal packages' namespace) swaps. Other
    exchanges (a model outside the serving layer, other object types) go straight through. -#}
{% macro exchange_tables_atomic(old_relation, target_relation, obj_types='TABLES') %}
    {%- if obj_types == 'TABLES' and model is defined and model.resource_type == 'model'
          and 'serving' in model.tags and target_relation.identifier == this.identifier -%}
        {%- do serving_guard(old_relation) -%}
    {%- endif -%}
    {%- do dbt.exchange_tables_atomic(old_relation, target_relation, obj_types) -%}
{% endmacro %}
