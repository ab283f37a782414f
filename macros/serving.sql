{#- The ClickHouse serving layer (models/serving): it reads what the compute run exported to the
    lake as Parquet (nev-battery export), one folder per ADS table:
      <lake_root>/ads/<ads table>/month=YYYY-MM/*.parquet   tables with a date, by month
      <lake_root>/ads/<ads table>/*.parquet                 tables replaced whole
    so publishing never recomputes anything. -#}

{#- The lake as the ClickHouse engine reads it: env NEV_LAKE_URL, else var lake_url (an s3:// or
    hdfs:// URL, or a path under a server's user_files_path), else the folder the export wrote,
    env NEV_LAKE_ROOT, else var lake_root (nev-battery publish sets NEV_LAKE_ROOT to its absolute
    path: chdb reads it in-process). Two names because a production lake is written by the
    compute run at one address (a mount) and read by the server at another (a bucket). -#}
{% macro lake_url() -%}
    {%- set root = env_var('NEV_LAKE_URL', '') or var('lake_url', none)
        or env_var('NEV_LAKE_ROOT', var('lake_root')) -%}
    {{- return((root | string).rstrip('/')) -}}
{%- endmacro %}

{#- var publish_months as a list of 'YYYY-MM' (a list or a comma-separated string; [] = all). -#}
{% macro publish_months_list() -%}
    {%- set raw = var('publish_months', none) -%}
    {%- if raw is none or raw == '' -%}{{ return([]) }}{%- endif -%}
    {%- set items = raw.split(',') if raw is string else raw -%}
    {%- set out = [] -%}
    {%- for m in items -%}
        {%- set s = (m | string).strip() -%}
        {%- if not modules.re.fullmatch('[0-9]{4}-(0[1-9]|1[0-2])', s) -%}
            {{ exceptions.raise_compiler_error("var publish_months: '" ~ s ~ "' is not a month 'YYYY-MM' (got " ~ raw ~ ")") }}
        {%- endif -%}
        {%- do out.append(s) -%}
    {%- endfor -%}
    {{ return(out | unique | sort | list) }}
{%- endmacro %}

{#- The table function reading an exported ADS table: file() here, s3() or hdfs() in production
    (var lake_table_function; s3 credentials from var lake_s3_named_collection, a named collection
    on the server, else the server's own: an IAM role or its s3 config). Partitioned tables read
    only the month folders of publish_months, so a month not published is not even opened.
    exported_only: only the file names nev-battery export writes (data_0.parquet in a month
    folder, <ads table>.parquet for a table exported whole; nev_battery.lake.export_file), not
    every *.parquet: the rows the export wrote, which macro serving_guard compares with what the
    model loaded. -#}
{% macro lake_table(ads_table, partitioned=true, all_months=false, exported_only=false) -%}
    {%- set months = [] if all_months else publish_months_list() -%}
    {%- set base = lake_url() ~ '/ads/' ~ ads_table -%}
    {%- set name = ('data_0.parquet' if partitioned else ads_table ~ '.parquet') if exported_only else '*.parquet' -%}
    {%- if not partitioned -%}
        {%- set path = base ~ '/' ~ name -%}
    {%- elif months | length == 1 -%}
        {%- set path = base ~ '/month=' ~ months[0] ~ '/' ~ name -%}
    {%- elif months -%}
        {%- set path = base ~ '/month={' ~ months | join(',') ~ '}/' ~ name -%}
    {%- else -%}
        {#- month folders alone: not a copy of one (`month=2026-03 (copy)`) -#}
        {%- set path = base ~ '/month=????-??/' ~ name -%}
    {%- endif -%}
    {%- set fn = var('lake_table_function', 'file') -%}
    {%- if fn == 'file' -%}
        file('{{ path }}', 'Parquet')
    {%- elif fn == 's3' and var('lake_s3_named_collection', none) -%}
        s3({{ var('lake_s3_named_collection') }}, url = '{{ path }}', format = 'Parquet')
    {%- elif fn in ('s3', 'hdfs') -%}
        {{ fn }}('{{ path }}', 'Parquet')
    {%- else -%}
        {{ exceptions.raise_compiler_error("var lake_table_function: '" ~ fn ~ "' is not file, s3 or hdfs") }}
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of the month-partitioned serving models. dbt-clickhouse's insert_overwrite
    replaces only the partitions its staging table has parts in, so a published month the lake
    now holds no rows for (a recompute emptied it: its folder has an empty file) would keep its
    old rows. This drops those months' partitions, after the replace and only when it succeeded
    (a failed staging load runs no post-hook). It needs the months named (var publish_months,
    as nev-battery publish always passes them): with every month, no folder names an empty one. -#}
{% macro serving_drop_emptied_months() -%}
    {%- set partition_by = config.get('partition_by') -%}
    {%- set months = publish_months_list() -%}
    {%- if not execute or not partition_by or not months -%}{{ return('') }}{%- endif -%}
    {%- if not (partition_by | string).startswith('toYYYYMM(') -%}
        {{ exceptions.raise_compiler_error("serving_drop_emptied_months: " ~ this ~ " is partitioned by " ~ partition_by ~ ", not by month (toYYYYMM)") }}
    {%- endif -%}
    {#- months with rows in the lake: the month folder of each file that has any -#}
    {%- set with_rows = run_query("select distinct extract(_path, 'month=([0-9]{4}-[0-9]{2})') from "
        ~ lake_table('ads_' ~ this.identifier)).columns[0].values() -%}
    {%- set emptied = [] -%}
    {%- for m in months if m not in with_rows -%}{%- do emptied.append(m.replace('-', '')) -%}{%- endfor -%}
    {%- if not emptied -%}{{ return('') }}{%- endif -%}
    {%- set served = run_query("select distinct partition_id from system.parts where active and database = '"
        ~ this.schema ~ "' and table = '" ~ this.identifier ~ "' and partition_id in ('"
        ~ emptied | join("', '") ~ "')").columns[0].values() -%}
    {%- if not served -%}{{ return('') }}{%- endif -%}
    alter table {{ this }}
    {%- for p in served | sort %}
        drop partition id '{{ p }}'{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- Pre-hook of the serving models: drops this table's staging tables left by earlier runs. A load
    that fails after dbt-clickhouse created its staging table `<table>__dbt_new_data_<invocation
    id>` (a value that cannot be cast, a lost connection, a killed run) leaves it behind, and no
    later run drops it: the name is that run's. Only staging tables of this table and of other
    runs; the served table is not touched. (So two publishes of one table at a time would fail
    one another's load, each leaving the table as it was: publish one at a time.) -#}
{% macro serving_drop_stale_staging() -%}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set prefix = this.identifier ~ '__dbt_new_data_' -%}
    {%- set own = prefix ~ invocation_id.replace('-', '_') -%}
    {%- set stale = run_query("select name from system.tables where database = '" ~ this.schema
        ~ "' and startsWith(name, '" ~ prefix ~ "') and name != '" ~ own ~ "'").columns[0].values() -%}
    {%- for name in stale -%}
        {%- do run_query('drop table if exists `' ~ this.schema ~ '`.`' ~ name ~ '`') -%}
    {%- endfor -%}
    {{- return('') -}}
{%- endmacro %}

{#- Months kept: var serving_ttl_months (6), a positive integer. -#}
{% macro serving_ttl_months() -%}
    {%- set n = var('serving_ttl_months', 6) -%}
    {%- if not (n | string).isdigit() or (n | int) < 1 -%}
        {{ exceptions.raise_compiler_error("var serving_ttl_months: '" ~ n ~ "' is not a positive number of months") }}
    {%- endif -%}
    {{- return(n | int) -}}
{%- endmacro %}

{#- The TTL clause of a served table (model config ttl): rows leave serving_ttl_months after
    their date; ClickHouse drops them in merges, whole partitions once all their rows expired. -#}
{% macro serving_ttl(date_column) -%}
    {{ date_column }} + toIntervalMonth({{ serving_ttl_months() }})
{%- endmacro %}

{#- Pre-hook of the serving models: a served table that exists already gets the model's TTL
    (config ttl, that is serving_ttl_months) when its own differs. dbt-clickhouse writes the TTL
    into CREATE TABLE only, so an incremental publish with another serving_ttl_months would keep
    the table's first TTL (and a later MATERIALIZE TTL or merge would drop the rows the new one
    keeps). ALTER ... MODIFY TTL before the load: the months loaded are then kept by the new rule
    (and rows of the old months the new TTL no longer keeps leave in merges). -#}
{% macro serving_apply_ttl() -%}
    {%- set ttl = config.get('ttl') -%}
    {%- if not execute or not ttl -%}{{ return('') }}{%- endif -%}
    {%- set res = run_query("select engine_full from system.tables where database = '" ~ this.schema
        ~ "' and name = '" ~ this.identifier ~ "'") -%}
    {%- if res.rows | length == 0 -%}{{ return('') }}{%- endif -%}
    {#- the TTL as ClickHouse formats it (`TTL <expr> SETTINGS ...`): compared without spaces -#}
    {%- set current = modules.re.search('\\bTTL (.*?)(?: SETTINGS |$)', res.rows[0][0]) -%}
    {%- set have = (current.group(1) if current else '') | replace(' ', '') -%}
    {%- if have != (ttl | string) | replace(' ', '') -%}
        {%- do log("serving_apply_ttl: " ~ this ~ " TTL " ~ (have or 'none') ~ " -> " ~ ttl, info=False) -%}
        {%- do run_query('alter table ' ~ this ~ ' modify ttl ' ~ ttl) -%}
    {%- endif -%}
    {{- return('') -}}
{%- endmacro %}

{#- True for rows the TTL keeps: the same rule as serving_ttl, evaluated now. -#}
{% macro serving_alive(date_expr) -%}
    {{ date_expr }} + toIntervalMonth({{ serving_ttl_months() }}) > now()
{%- endmacro %}

{#- `<month of date_expr> in (publish_months)`, or 1 = 1 when every month is published. -#}
{% macro publish_month_filter(date_expr) -%}
    {%- set months = publish_months_list() -%}
    {%- if months -%}
        formatDateTime({{ date_expr }}, '%Y-%m') in ('{{ months | join("', '") }}')
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- Fails when the served table and the lake disagree in rows, over the published months and
    the rows the TTL keeps (the lake keeps history; the served table six months). -#}
{% test row_count_equals_lake(model, ads_table, date_expr=none) %}
{%- set partitioned = date_expr is not none -%}
{%- set keep = (serving_alive(date_expr) ~ ' and ' ~ publish_month_filter(date_expr)) if partitioned else '1 = 1' %}
with served as (
    select count(*) as n from {{ model }} where {{ keep }}
),

lake as (
    select count(*) as n from {{ lake_table(ads_table, partitioned) }} where {{ keep }}
)

select
    served.n as served_rows,
    lake.n as lake_rows
from served cross join lake
where served.n != lake.n
{% endtest %}

{#- The served tables' TTL applied now (dbt run-operation serving_materialize_ttl, the monthly
    job): rows older than serving_ttl_months leave at once instead of at a later merge. Tables
    without a TTL (the whole, unpartitioned ones) are left alone. -#}
{% macro serving_materialize_ttl() -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and 'serving' in node.tags and node.config.get('ttl') -%}
        {%- set rel = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
        {%- if rel is not none -%}
            {%- do run_query('alter table ' ~ rel ~ ' materialize ttl settings mutations_sync = 2') -%}
            {{ log('TTL applied: ' ~ rel, info=true) }}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}
