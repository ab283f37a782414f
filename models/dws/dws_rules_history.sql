{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        tags=['rules'],
    )
}}

{%- set detected_at = run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f') -%}

-- The history of the rules (issue 18): one row per value of a rule table (warning_rules,
-- signal_range_limits, detector_settings as the run used them) that a run found added, changed
-- or removed against the latest state this table holds, with the old and new value, the rules
-- versions before and after, and when. The first run records every value as added. Append-only
-- and kept through --full-refresh (full_refresh=false): history never shrinks. Values are the
-- canonical text of the rules version (numbers %.12g, booleans true/false).

with

current_values as (
    -- every value of the rule tables as this run uses them (macro rules_history_current)
    {{ rules_history_current() }}
),

previous as (
    -- the state the history holds: the last row of every value (none on the first run)
    {{ rules_history_previous() }}
),

previous_version as (
    {{ rules_history_previous_version() }}
),

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
        case when p.change_type <> 'removed' then p.rule_value end as old_value,
        c.rule_value as new_value
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
                or coalesce(c.rule_value, '<null>') <> coalesce(p.rule_value, '<null>')
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
