{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='collect_date',
        on_schema_change='fail',
    )
}}

with

{{ dws_realtime_cleaning_ctes() }},

field_issues as (
    select
        source_file,
        source_row_number,
        vin,
        collect_time,
        collect_date,
        unnest(issues) as issue_struct
    from frame_checked
    where len(issues) > 0
),

quarantine as (
    select
        source_file,
        source_row_number,
        vin,
        collect_time,
        collect_date,
        reason_code,
        'row' as field_name,
        'reject_row' as action,
        original_value,
        cast(null as varchar) as corrected_value
    from rejected_rows
    union all
    select
        source_file,
        source_row_number,
        vin,
        collect_time,
        collect_date,
        struct_extract(issue_struct, 'reason_code') as reason_code,
        struct_extract(issue_struct, 'field_name') as field_name,
        struct_extract(issue_struct, 'action') as action,
        struct_extract(issue_struct, 'original_value') as original_value,
        struct_extract(issue_struct, 'corrected_value') as corrected_value
    from field_issues
)

select * from quarantine
