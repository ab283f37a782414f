-- Cleaned vehicle master: valid VIN, known chemistry, one row per vin (first file row wins).

with

master as (
    select
        vin,
        vehicle_model,
        chemistry,
        usage_type,
        region,
        rated_capacity_ah,
        rated_energy_kwh,
        cells_in_series,
        temp_probes,
        is_current_discharge_positive,
        in_service_date,
        source_file,
        source_row_number,
        row_number() over (partition by vin order by source_file, source_row_number) as vin_rank
    from {{ ref('ods_vehicle_master') }}
    where is_vin_valid and chemistry in ('NCM', 'LFP')
)

select
    vin,
    vehicle_model,
    chemistry,
    usage_type,
    region,
    rated_capacity_ah,
    rated_energy_kwh,
    cells_in_series,
    temp_probes,
    is_current_discharge_positive,
    in_service_date,
    source_file,
    source_row_number
from master
where vin_rank = 1
