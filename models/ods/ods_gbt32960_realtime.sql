-- Decodes the GB/T 32960 real-time frames to physical units. Reads only the landing files that
-- ods_landing_file marks valid and non-empty (macro read_landing_files): a corrupt file is
-- reported there instead of failing the build or vanishing silently.
-- depends_on: {{ source('landing', 'gbt32960_realtime') }}
-- A view on DuckDB (the landing files are the storage); a table on Spark, whose Derby/Hive
-- metastore cannot hold a view text this long.
{{ config(materialized='view' if ods_realtime_is_view() else 'table') }}

with

source as (
    {{ read_landing_files('gbt32960_realtime') }}
),

coded as (
    -- the largest array codes, computed once: markers are the top codes of a field's width
    select
        src.*,
        {{ arr_max('src.cell_voltages') }} as cell_code_max,
        {{ arr_min('src.cell_voltages') }} as cell_code_min,
        {{ arr_max('src.probe_temps') }} as probe_code_max,
        {{ arr_min('src.probe_temps') }} as probe_code_min
    from source as src
),

vehicle_sign as (
    -- One row per vin even if the master repeats a vin: flip when any master row says so.
    select
        vin,
        max(case when is_current_discharge_positive = false then 1 else 0 end) = 1 as is_sign_flipped
    from {{ ref('ods_vehicle_master') }}
    group by vin
),

renamed as (
    select
        -- ids and times
        s.vin,
        {{ is_valid_vin('s.vin') }} as is_vin_valid,
        s.cmd,
        s.collect_time,
        s.receive_time,
        s.collect_date,

        -- status codes (markers -> null)
        {{ gbt32960_value('s.vehicle_status', 'vehicle_status') }} as vehicle_status,
        {{ gbt32960_value('s.charge_status', 'charge_status') }} as charge_status,
        {{ gbt32960_value('s.run_mode', 'run_mode') }} as run_mode,
        {{ gbt32960_value('s.dcdc_status', 'dcdc_status') }} as dcdc_status,

        -- vehicle data in physical units
        cast({{ gbt32960_value('s.speed', 'speed') }} as double) / 10 as speed_kmh,
        cast({{ gbt32960_value('s.odometer', 'odometer') }} as double) / 10 as odometer_km,
        cast({{ gbt32960_value('s.total_voltage', 'total_voltage') }} as double) / 10 as total_voltage_v,
        (cast({{ gbt32960_value('s.total_current', 'total_current') }} as double) / 10 - 1000)
        * case when coalesce(vs.is_sign_flipped, false) then -1 else 1 end as total_current_a,
        coalesce(vs.is_sign_flipped, false) as is_current_sign_flipped,
        cast({{ gbt32960_value('s.soc', 'soc') }} as double) as soc_pct,
        s.gear as gear_code,
        case s.gear & 15
            when 0 then 'N'
            when 13 then 'R'
            when 14 then 'D'
            when 15 then 'P'
            else case when s.gear & 15 between 1 and 6 then cast(s.gear & 15 as {{ str_type() }}) end
        end as gear_position,
        (s.gear & 32) <> 0 as has_drive_force,
        (s.gear & 16) <> 0 as has_brake_force,
        cast({{ gbt32960_value('s.insulation_resistance', 'insulation_resistance') }} as double)
            as insulation_resistance_kohm,
        cast({{ gbt32960_value('s.accel_pedal', 'accel_pedal') }} as double) as accel_pedal_pct,
        -- 101 = brake applied without a travel value: applied, travel unknown
        cast(nullif({{ gbt32960_value('s.brake_pedal', 'brake_pedal') }}, 101) as double) as brake_pedal_pct,
        {{ gbt32960_value('s.brake_pedal', 'brake_pedal') }} > 0 as is_brake_applied,

        -- extreme values
        {{ gbt32960_value('s.max_volt_subsys', 'max_volt_subsys') }} as max_volt_subsys_no,
        {{ gbt32960_value('s.max_volt_cell_no', 'max_volt_cell_no') }} as max_volt_cell_no,
        cast({{ gbt32960_value('s.max_cell_voltage', 'max_cell_voltage') }} as double) / 1000 as max_cell_voltage_v,
        {{ gbt32960_value('s.min_volt_subsys', 'min_volt_subsys') }} as min_volt_subsys_no,
        {{ gbt32960_value('s.min_volt_cell_no', 'min_volt_cell_no') }} as min_volt_cell_no,
        cast({{ gbt32960_value('s.min_cell_voltage', 'min_cell_voltage') }} as double) / 1000 as min_cell_voltage_v,
        {{ gbt32960_value('s.max_temp_subsys', 'max_temp_subsys') }} as max_temp_subsys_no,
        {{ gbt32960_value('s.max_temp_probe_no', 'max_temp_probe_no') }} as max_temp_probe_no,
        cast({{ gbt32960_value('s.max_temp', 'max_temp') }} - 40 as double) as max_temp_c,
        {{ gbt32960_value('s.min_temp_subsys', 'min_temp_subsys') }} as min_temp_subsys_no,
        {{ gbt32960_value('s.min_temp_probe_no', 'min_temp_probe_no') }} as min_temp_probe_no,
        cast({{ gbt32960_value('s.min_temp', 'min_temp') }} - 40 as double) as min_temp_c,

        -- alarms
        {{ gbt32960_value('s.max_alarm_level', 'max_alarm_level') }} as max_alarm_level,
        s.general_alarm_flags,
        s.battery_fault_codes,

        -- RESS arrays (element i = cell / probe i + 1). Cell voltages stay integer millivolts:
        -- a list_transform over ~100 elements per frame would cost more than reading them, so
        -- the markers are nulled only in the rare frames whose largest code is a marker.
        {{ gbt32960_cell_voltages_mv('s.cell_voltages', 's.cell_code_max') }} as cell_voltages_mv,
        {{ gbt32960_probe_temps_c('s.probe_temps') }} as probe_temps_c,
        {%- if ods_realtime_is_view() %}
            -- the raw codes too: a model that keeps a few frames (dws_cell_arrays) decodes after its
            -- join, where this view would decode every frame's arrays before the join drops them
            s.cell_voltages as cell_voltage_codes,
            s.probe_temps as probe_temp_codes,
        {%- endif %}

        -- per-frame summaries of the arrays from the raw codes, markers excluded: a scan of the
        -- codes instead of a decode of every element (markers are the largest codes)
        case
            when s.cell_code_max >= 65534
                then {{ arr_max(arr_filter('s.cell_voltages', 'x', 'x < 65534')) }}
            else s.cell_code_max
        end as cell_voltage_max_mv,
        case when s.cell_code_min < 65534 then s.cell_code_min end as cell_voltage_min_mv,
        case
            when s.cell_code_max >= 65534
                then {{ arr_sum(arr_filter('s.cell_voltages', 'x', 'x < 65534')) }}
            else {{ arr_sum('s.cell_voltages') }}
        end as cell_voltage_sum_mv,
        {{ arr_len('s.cell_voltages') }} as cell_count,
        cast(
            case
                when s.probe_code_max >= 254
                    then {{ arr_max(arr_filter('s.probe_temps', 'x', 'x < 254')) }}
                else s.probe_code_max
            end - 40 as double
        ) as probe_temp_max_c,
        cast(case when s.probe_code_min < 254 then s.probe_code_min end - 40 as double) as probe_temp_min_c,

        -- data quality
        {{ gbt32960_marker_field_list('s', 'abnormal') }} as abnormal_fields,
        {{ gbt32960_marker_field_list('s', 'invalid') }} as invalid_fields,

        -- lineage
        s.source_file,
        s.source_row_number,
        s.row_key
    from coded as s
    left join vehicle_sign as vs on s.vin = vs.vin
)

select * from renamed
