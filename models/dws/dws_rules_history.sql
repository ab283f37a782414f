{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        tags=['rules'],
    )
}}

{#- rules_as_used refs the seeds (rules from the seeds): dependencies found at parse time -#}
{%- set tables = rules_as_used() -%}
{%- set detected_at = run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f') -%}

-- The history of the rules (issue 18): one row per value of a rule table (warning_rules,
-- signal_range_limits, detector_settings as the run used them) that a run found added, changed
-- or removed against the latest state this table holds, with the old and new value, the rules
-- versions before and after, and when. The first run records every value as added. Append-only
-- and kept through --full-refresh (full_refresh=false): history never shrinks. Values are the
-- canonical text of the rules version (numbers %.12g, booleans true/false).

with

current_values as (
    {%- set ns = namespace(n=0) %}
    {%- for name, rows in tables.items() %}
    {%- set cols = rules_columns(name) %}
    {%- for r in rows %}
    {%- for c, t in cols[1:] %}
    {%- set v = r[c] %}
    {%- if ns.n > 0 %}
    union all
    {%- endif %}
    {%- set ns.n = ns.n + 1 %}
    select
        cast('{{ name }}' as {{ str_type() }}) as table_name,
        {{ rule_literal(r[cols[0][0]], 's') }} as rule_key,
        cast('{{ c }}' as {{ str_type() }}) as column_name,
        {{ rule_literal(none if v is none else rule_text(v, t), 's') }} as value
    {%- endfor %}
    {%- endfor %}
    {%- endfor %}
    {%- if ns.n == 0 %}
    select
        cast(null as {{ str_type() }}) as table_name,
        cast(null as {{ str_type() }}) as rule_key,
        cast(null as {{ str_type() }}) as column_name,
        cast(null as {{ str_type() }}) as value
    where 1 = 0
    {%- endif %}
),

{% if is_incremental() %}
latest as (
    -- the state the history holds: the last row of every value
    select
        h.table_name,
        h.rule_key,
        h.column_name,
        h.new_value as value,
        h.change_type,
        h.rules_version,
        row_number() over (
            partition by h.table_name, h.rule_key, h.column_name
            order by h.detected_at desc, h.rules_version desc
        ) as rn
    from {{ this }} as h
),

previous as (
    select l.* from latest as l
    where l.rn = 1
),

previous_version as (
    select max(h.rules_version) as rules_version
    from {{ this }} as h
    where h.detected_at = (select max(x.detected_at) from {{ this }} as x)
),
{% else %}
previous as (
    select
        cast(null as {{ str_type() }}) as table_name,
        cast(null as {{ str_type() }}) as rule_key,
        cast(null as {{ str_type() }}) as column_name,
        cast(null as {{ str_type() }}) as value,
        cast(null as {{ str_type() }}) as change_type
    where 1 = 0
),

previous_version as (
    select cast(null as {{ str_type() }}) as rules_version
),
{% endif %}

changes as (
    select
        coalesce(c.table_name, p.table_name) as table_name,
        coalesce(c.rule_key, p.rule_key) as rule_key,
        coalesce(c.column_name, p.column_name) as column_name,
        case
            when c.table_name is null then 'removed'
            when p.table_name is null or p.change_type = 'removed' then 'added'
            else 'changed'
        end as change_type,
        case when p.change_type <> 'removed' then p.value end as old_value,
        c.value as new_value
    from current_values as c
    full outer join previous as p
        on
            c.table_name = p.table_name
            and c.rule_key = p.rule_key
            and c.column_name = p.column_name
    where
        (c.table_name is null and p.change_type <> 'removed')
        or (
            c.table_name is not null
            and (
                p.table_name is null
                or p.change_type = 'removed'
                or coalesce(c.value, '<null>') <> coalesce(p.value, '<null>')
            )
        )
)

select
    ch.table_name,
    ch.rule_key,
    ch.column_name,
    ch.change_type,
    ch.old_value,
    ch.new_value,
    pv.rules_version as previous_rules_version,
    cast('{{ rules_version() }}' as {{ str_type() }}) as rules_version,
    cast('{{ detected_at }}' as timestamp) as detected_at
from changes as ch
cross join previous_version as pv
