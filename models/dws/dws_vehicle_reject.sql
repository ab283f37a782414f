-- The vehicle master rows dws_vehicle does not keep, each with the reason: nothing of the master
-- is dropped silently (ods_vehicle_master rows = dws_vehicle rows + these, tested).

with

kept as (
    select
        source_file,
        source_row_number
    from {{ ref('dws_vehicle') }}
)

select
    m.source_file,
    m.source_row_number,
    m.source_vin,
    m.vin,
    m.chemistry,
    case
        when not m.is_vin_valid then 'malformed_vin'
        when m.chemistry is null or m.chemistry not in ('NCM', 'LFP') then 'unknown_chemistry'
        else 'duplicate_vin'
    end as reason_code
from {{ ref('ods_vehicle_master') }} as m
left join kept as k
    on m.source_file = k.source_file and m.source_row_number = k.source_row_number
where k.source_file is null
