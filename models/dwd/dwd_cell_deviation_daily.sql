{{ config(**day_incremental('date')) }}

{%- set period_s = var('cell_sample_period_s', 1800) -%}

-- Each cell's and each probe's deviation from its own pack, per vehicle and day: the input of
-- the cell- and probe-level warning detectors. The only DWD model that reads the per-cell
-- arrays, and only at sample frames: near-rest frames (|I| <= cell_sample_max_c_rate x rated
-- capacity, where a cell's voltage is close to its open-circuit voltage and a probe shows no
-- Joule heating), at most one per vehicle and cell_sample_period_s. For every element of a
-- sample frame: its deviation from the pack's median and the robust z-score
-- 0.6745 (x - median) / MAD (Iglewicz & Hoaglin); per day their mean, the lowest / highest z,
-- how often the element was the pack's lowest / highest, and how often it was missing.

{#- the order of a period's frames: time, then the lineage key (two frames of one time, a re-sent
    one, are picked the same way by every run) -#}
{%- set frame_order = "cast(f.collect_time as " ~ str_type() ~ ") || '|' || f.source_file || '|' || "
    ~ "lpad(cast(f.source_row_number as " ~ str_type() ~ "), 12, '0')" %}

with

samples as (
    -- the first near-rest frame of each vehicle and period: a grouped min_by, where a window
    -- would sort the day's low-current frames
    select
        f.vin,
        f.collect_date,
        min(f.collect_time) as collect_time,
        {{ min_by('f.source_file', frame_order) }} as source_file,
        {{ min_by('f.source_row_number', frame_order) }} as source_row_number,
        -- whether DWS nulled the frame's array summary (a flag: min_by may skip a null value)
        {{ min_by('case when f.cell_voltage_min_v is null then 1 else 0 end', frame_order) }}
            as is_cell_summary_null,
        {{ min_by('case when f.probe_temp_min_c is null then 1 else 0 end', frame_order) }}
            as is_probe_summary_null
    from {{ ref('dws_realtime_frame') }} as f
    inner join {{ ref('dws_vehicle') }} as v on f.vin = v.vin
    where
        {{ batch_filter('f.collect_date') }}
        and abs(f.total_current_a) <= {{ var('cell_sample_max_c_rate', 0.05) }} * v.rated_capacity_ah
    group by f.vin, f.collect_date, floor({{ epoch_seconds('f.collect_time') }} / {{ period_s }})
),

sample_arrays as (
    -- the arrays of the sample frames only: joined on the lineage key, then decoded and cleaned
    -- as dws_cell_frame does (going through that view would decode every frame's arrays)
    select
        s.vin,
        s.collect_time,
        s.collect_date,
        {{ dws_cell_arrays('o', 's.is_cell_summary_null = 1', 's.is_probe_summary_null = 1') }}
    from samples as s
    inner join {{ ref('ods_gbt32960_realtime') }} as o
        on s.source_file = o.source_file
            and s.source_row_number = o.source_row_number
            and s.collect_date = o.collect_date
    where {{ batch_filter('o.collect_date') }}
),

arrays as (
    -- per sample frame, the pack's median and MAD (list functions: no regrouping of elements)
    select
        a.*,
        {{ arr_median(arr_transform('a.cell_voltages_mv', 'e', 'abs(e - a.cell_med)')) }} as cell_mad,
        {{ arr_median(arr_transform('a.probe_temps_c', 'e', 'abs(e - a.probe_med)')) }} as probe_mad
    from (
        select
            c.vin,
            c.collect_time,
            c.collect_date,
            c.cell_voltages_mv,
            c.probe_temps_c,
            {{ arr_median('c.cell_voltages_mv') }} as cell_med,
            {{ arr_min('c.cell_voltages_mv') }} as cell_lo,
            {{ arr_max('c.cell_voltages_mv') }} as cell_hi,
            {{ arr_median('c.probe_temps_c') }} as probe_med,
            {{ arr_min('c.probe_temps_c') }} as probe_lo,
            {{ arr_max('c.probe_temps_c') }} as probe_hi
        from sample_arrays as c
    ) as a
),

elements as (
    select
        a.vin,
        a.collect_date,
        'cell' as element_type,
        a.cell_med as med,
        a.cell_mad as mad,
        a.cell_lo as lo,
        a.cell_hi as hi,
        {{ unnest_with_position('a.cell_voltages_mv', 'pos', 'val') }}
    from arrays as a
    union all
    select
        a.vin,
        a.collect_date,
        'probe' as element_type,
        a.probe_med as med,
        a.probe_mad as mad,
        a.probe_lo as lo,
        a.probe_hi as hi,
        {{ unnest_with_position('a.probe_temps_c', 'pos', 'val') }}
    from arrays as a
),

dev as (
    select
        e.vin,
        e.collect_date,
        e.element_type,
        cast(e.pos as integer) + 1 as element_no,
        -- cells in mV, probes in degC
        cast(e.val as double) as val,
        cast(e.val as double) - e.med as deviation,
        e.med,
        e.lo,
        e.hi,
        -- a floor: one resolution step (1 mV, 1 degC) keeps a pack of identical readings finite
        greatest(cast(e.mad as double), 1.0) as mad
    from elements as e
)

select
    d.vin,
    d.collect_date as date,
    d.element_type,
    d.element_no,
    count(*) as sample_frames,
    sum(case when d.val is null then 1 else 0 end) as missing_frames,
    avg(d.deviation) as mean_deviation,
    min(d.deviation) as min_deviation,
    max(d.deviation) as max_deviation,
    -- fixed point (exact_sum): a parallel float sum differs in its last bits from run to run
    {{ exact_sum('0.6745 * d.deviation / d.mad', 12) }} / count(d.deviation) as mean_robust_z,
    min(0.6745 * d.deviation / d.mad) as min_robust_z,
    max(0.6745 * d.deviation / d.mad) as max_robust_z,
    sum(case when d.val = d.lo then 1 else 0 end) as lowest_frames,
    sum(case when d.val = d.hi then 1 else 0 end) as highest_frames,
    -- a reading that did not move all day while its pack did: a stuck sensor
    max(d.val) - min(d.val) as value_range,
    max(d.med) - min(d.med) as pack_median_range
from dev as d
group by d.vin, d.collect_date, d.element_type, d.element_no
