{{ config(materialized='view') }}

-- Cell voltages and probe temperatures of the kept frames, cleaned: elements outside the seed's
-- range limits are null. A view over the landing arrays: only a query that needs per-cell data
-- pays for reading the arrays, when it runs. The warning detectors read the arrays of their few
-- sample frames through the same macro (dws_cell_arrays) after their own join.

select
    f.vin,
    f.collect_time,
    f.collect_date,
    {{ dws_cell_arrays('o', 'f.cell_voltage_min_v is null', 'f.probe_temp_min_c is null') }},
    f.source_file,
    f.source_row_number
from {{ ref('dws_realtime_frame') }} as f
inner join {{ ref('ods_gbt32960_realtime') }} as o
    on f.source_file = o.source_file and f.source_row_number = o.source_row_number and f.collect_date = o.collect_date
