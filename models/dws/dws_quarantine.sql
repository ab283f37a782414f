{{ config(**day_incremental('collect_date')) }}

with

checked as (
    select *
    from {{ ref('dws_realtime_checked') }}
    where
        {{ batch_filter('collect_date') }}
        and (reject_reason is not null or issues is not null)
),

rejected as (
    select
        source_file,
        source_row_number,
        vin,
        collect_time,
        collect_date,
        reject_reason as reason_code,
        'row' as field_name,
        'reject_row' as action,
        reject_value as original_value,
        cast(null as {{ str_type() }}) as corrected_value
    from checked
    where reject_reason is not null
),

field_issues as (
    select
        source_file,
        source_row_number,
        vin,
        collect_time,
        collect_date,
        {{ unnest_array('issues') }} as issue
    from checked
    where reject_reason is null
)

select * from rejected
union all
select
    source_file,
    source_row_number,
    vin,
    collect_time,
    collect_date,
    {{ struct_field('issue', 'reason_code') }} as reason_code,
    {{ struct_field('issue', 'field_name') }} as field_name,
    {{ struct_field('issue', 'action') }} as action,
    {{ struct_field('issue', 'original_value') }} as original_value,
    {{ struct_field('issue', 'corrected_value') }} as corrected_value
from field_issues
