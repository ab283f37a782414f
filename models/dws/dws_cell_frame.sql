{{ config(materialized='view') }}

-- Cell voltages and probe temperatures of the kept frames, cleaned: elements outside the seed's
-- range limits are null. A view over the landing arrays: only the models that need per-cell data
-- (cell-level warning detectors) pay for reading the arrays, once, when they run.

select
    f.vin,
    f.collect_time,
    f.collect_date,
    {{ array_range_limited('o.cell_voltages_mv', 'cell_voltages', 'f.cell_voltage_min_v is null', 1000) }}
        as cell_voltages_mv,
    {{ array_range_limited('o.probe_temps_c', 'probe_temps', 'f.probe_temp_min_c is null', 1) }}
        as probe_temps_c,
    f.source_file,
    f.source_row_number
from {{ ref('dws_realtime_frame') }} as f
inner join {{ ref('ods_gbt32960_realtime') }} as o
    on f.source_file = o.source_file and f.source_row_number = o.source_row_number and f.collect_date = o.collect_date
