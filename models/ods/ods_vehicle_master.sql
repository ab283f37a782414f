-- Reads only the master files that ods_landing_file marks valid (see macro read_landing_files).
-- depends_on: {{ source('landing', 'vehicle_master') }}

with

source as (
    {{ read_landing_files('vehicle_master') }}
),

renamed as (
    select
        -- ids
        vin,
        {{ is_valid_vin('vin') }} as is_vin_valid,
        vehicle_model,
        upper(trim(chemistry)) as chemistry,
        usage_type,
        region,

        -- numerics
        rated_capacity_ah,
        rated_energy_kwh,
        cells_in_series,
        temp_probes,

        -- booleans
        current_discharge_positive as is_current_discharge_positive,

        -- dates
        in_service_date,

        -- lineage
        source_file,
        source_row_number
    from source
)

select * from renamed
