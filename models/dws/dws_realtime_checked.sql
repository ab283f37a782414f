{{ config(**day_incremental('collect_date')) }}

{%- set null_limits = get_signal_range_limits('null_field') -%}
{%- set reject_limits = get_signal_range_limits('reject_row') -%}
with

{{ dws_realtime_cleaning_ctes() }}

select
    -- lineage key: one row per ODS row
    c.source_file,
    c.source_row_number,

    -- keys and times
    c.vin,
    c.collect_time,
    c.collect_date,
    c.receive_time,
    c.cmd,

    -- row decision
    c.reject_reason,
    case
        when c.reject_reason in ('malformed_vin', 'unknown_vin') then c.vin
        when c.reject_reason = 'clock_future'
            then
                'collect_time=' || cast(c.collect_time as {{ str_type() }})
                || ' receive_time=' || cast(c.receive_time as {{ str_type() }})
        when c.reject_reason = 'before_service'
            then 'in_service_date=' || cast(c.in_service_date as {{ str_type() }})
        when c.reject_reason in ('duplicate', 'resend_duplicate')
            then
                'cmd=' || cast(c.cmd as {{ str_type() }})
                || ' receive_time=' || cast(c.receive_time as {{ str_type() }})
        {%- if reject_limits %}
        when c.reject_reason = 'out_of_range' then {{ dws_reject_range_text('c', reject_limits) }}
        {%- endif %}
    end as reject_value,

    -- cleaned scalars: markers are null since ODS; range limits and cross-field rules null here
    {%- for col in gbt32960_scalar_columns() %}
    {{ dws_cleaned_scalar('c', col) }} as {{ col }},  -- noqa: LT02
    {%- endfor %}
    c.battery_fault_codes,

    -- per-frame summaries of the RESS arrays (null when the array broke a range limit)
    {%- for l in null_limits if l['is_array'] %}
    {%- for col in array_summary_columns(l['field_name']) %}
    case when c.oor__{{ l['signal'] }} then null else c.{{ col }} end as {{ col }},
    {%- endfor %}
    {%- endfor %}
    case when c.is_pack_voltage_mismatch then null else c.cell_voltage_sum_v end as cell_voltage_sum_v,
    c.cell_count,

    -- field issues of a kept row (null when none): dws_quarantine unnests them
    case when c.reject_reason is null then {{ dws_field_issues('c') }} end as issues
from checked as c
