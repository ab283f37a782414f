-- Reads only the master files that ods_landing_file marks valid (see macro read_landing_files).
-- depends_on: {{ source('landing', 'vehicle_master') }}

with

source as (
    {{ read_landing_files('vehicle_master') }}
),

normalised as (
    -- a master is typed by hand more often than a T-BOX sends: a VIN with lowercase letters or
    -- stray blanks is normalised (VINs are upper case, ISO 3779) and flagged; one still
    -- malformed after that is rejected by dws_vehicle_reject, never dropped
    select
        *,
        upper(trim(vin)) as normalised_vin
    from source
),

renamed as (
    select
        -- ids
        normalised_vin as vin,
        vin as source_vin,
        coalesce(vin <> normalised_vin, false) as is_vin_normalised,
        {{ is_valid_vin('normalised_vin') }} as is_vin_valid,
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
    from normalised
)

select * from renamed
