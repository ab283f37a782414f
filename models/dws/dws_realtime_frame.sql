{{ config(materialized='view') }}

-- The cleaned real-time detail: the kept rows of dws_realtime_checked. A view, because the
-- incremental storage is dws_realtime_checked (written once per batch); copying 9.5 M rows a
-- day into a second table would double the cost of the layer for no gain.

select
    vin,
    collect_time,
    collect_date,
    receive_time,
    cmd,
    {{ gbt32960_scalar_columns() | join(',\n    ') }},
    battery_fault_codes,
    cell_voltage_min_v,
    cell_voltage_max_v,
    cell_voltage_sum_v,
    cell_count,
    probe_temp_min_c,
    probe_temp_max_c,
    issues is not null as is_cleaned,
    coalesce(
        {{ arr_sorted_set(arr_transform('issues', 'i', struct_field('i', 'field_name'))) }},
        {{ empty_string_array() }}
    ) as cleaned_fields,
    source_file,
    source_row_number
from {{ ref('dws_realtime_checked') }}
where reject_reason is null
