-- Current-sensor offset per vehicle, from every zero-current frame of its history (the
-- charge-complete frames counted by dwd_vehicle_daily): the BMS's Hall sensor reads
-- I_true + offset, so a charge integrated from it is off by offset x charging time, 2-3 % of a
-- 3.3 kW AC charge for a 0.25 A offset. Small (one row per vehicle) and rebuilt on every run
-- from the daily rows, so the estimate sharpens as charge-complete frames accumulate.

with

stats as (
    select
        d.vin,
        sum(d.zero_current_frames) as n,
        -- fixed point: the daily sums are exact decimals, and a float sum in whatever order the
        -- rows come would move the offset in its last bits from run to run (and with it every
        -- label and the hash of a retrained SOH model)
        {{ exact_sum('d.zero_current_sum_a', 3) }} as s,
        {{ exact_sum('d.zero_current_sumsq_a2', 4) }} as ss
    from {{ ref('dwd_vehicle_daily') }} as d
    group by d.vin
)

select
    st.vin,
    st.n as zero_current_frames,
    case when st.n >= {{ var('current_offset_min_frames', 5) }} then st.s / st.n end as current_offset_a,
    case
        when st.n >= {{ var('current_offset_min_frames', 5) }}
            then sqrt(greatest(st.ss / st.n - (st.s / st.n) * (st.s / st.n), 0) / st.n)
    end as current_offset_se_a
from stats as st
