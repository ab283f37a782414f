{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='collect_date',
        on_schema_change='fail',
    )
}}

with

{{ dws_realtime_cleaning_ctes() }}

select
    -- keys and times
    vin,
    collect_time,
    collect_date,
    receive_time,
    cmd,

    -- status codes
    vehicle_status,
    charge_status,
    run_mode,
    dcdc_status,

    -- vehicle data
    speed_kmh,
    odometer_km,
    total_voltage_v,
    total_current_a,
    is_current_sign_flipped,
    soc_pct,
    gear_code,
    gear_position,
    has_drive_force,
    has_brake_force,
    insulation_resistance_kohm,
    accel_pedal_pct,
    brake_pedal_pct,
    is_brake_applied,

    -- extreme values
    max_volt_subsys_no,
    max_volt_cell_no,
    max_cell_voltage_v,
    min_volt_subsys_no,
    min_volt_cell_no,
    min_cell_voltage_v,
    max_temp_subsys_no,
    max_temp_probe_no,
    max_temp_c,
    min_temp_subsys_no,
    min_temp_probe_no,
    min_temp_c,

    -- alarms
    max_alarm_level,
    general_alarm_flags,
    battery_fault_codes,

    -- RESS arrays
    cell_voltages_v,
    probe_temps_c,

    -- data quality
    len(issues) > 0 as is_cleaned,
    list_sort(list_distinct(list_transform(issues, lambda i: struct_extract(i, 'field_name')))) as cleaned_fields,

    -- lineage
    source_file,
    source_row_number
from frame_checked
