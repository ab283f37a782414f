-- Current-sensor offset per vehicle. The BMS's Hall sensor reads I_true + offset, so a charge
-- integrated from it is off by offset x charging time (2-3 % of a 3.3 kW AC charge for 0.25 A).
--
-- Two kinds of frames carry a zero reference, from dwd_vehicle_daily's per-day sums:
--   idle frames (vehicle off, not charging, e.g. a charger pausing): true current zero for
--     certain, but few of them;
--   charge-complete frames (charge_status 4): many, but with the charger connected the pack
--     may feed the vehicle's standby / auxiliary load (0.9-1.5 A on some fleets), which a naive
--     mean takes for sensor offset and then adds to every charge (+4.6 % AC charge Ah).
-- The charge-complete frames are used only when they agree with the idle frames (difference
-- within 3 standard errors + current_offset_tolerance_a), or, without idle frames, when their
-- mean lies within a plausible sensor offset (|mean| <= current_offset_max_a, a Hall sensor's
-- zero-offset spec); otherwise they are taken to carry a load (standby_load_a) and dropped.
-- The estimate is the posterior mean under a prior N(0, current_offset_prior_sd_a^2) with a
-- per-frame noise of current_frame_noise_a: a vehicle with two idle frames gets a shrunk offset
-- rather than a noisy one, a vehicle with none gets no calibration (null). All four numbers
-- are fixed sensor-level hyper-parameters, not fitted on any fleet.
-- Small (one row per vehicle) and rebuilt on every run from the daily rows.

{%- set tau = var('current_offset_prior_sd_a', 0.25) -%}
{%- set sigma = var('current_frame_noise_a', 0.4) -%}
{%- set shrink = (sigma * sigma) / (tau * tau) %}

with

stats as (
    select
        d.vin,
        sum(d.zero_current_frames) as n_c,
        -- fixed point: the daily sums are exact decimals, and a float sum in whatever order the
        -- rows come would move the offset in its last bits from run to run (and with it every
        -- label and the hash of a retrained SOH model)
        {{ exact_sum('d.zero_current_sum_a', 3) }} as s_c,
        {{ exact_sum('d.zero_current_sumsq_a2', 4) }} as ss_c,
        sum(d.idle_current_frames) as n_i,
        {{ exact_sum('d.idle_current_sum_a', 3) }} as s_i,
        {{ exact_sum('d.idle_current_sumsq_a2', 4) }} as ss_i
    from {{ ref('dwd_vehicle_daily') }} as d
    group by d.vin
),

tested as (
    select
        st.*,
        st.s_c / nullif(st.n_c, 0) as mean_c_a,
        st.s_i / nullif(st.n_i, 0) as mean_i_a,
        case
            when coalesce(st.n_c, 0) = 0 then false
            when coalesce(st.n_i, 0) > 0
                then abs(st.s_c / st.n_c - st.s_i / st.n_i)
                    <= 3 * {{ sigma }} * sqrt(1.0 / st.n_c + 1.0 / st.n_i)
                    + {{ var('current_offset_tolerance_a', 0.1) }}
            else abs(st.s_c / st.n_c) <= {{ var('current_offset_max_a', 0.5) }}
        end as use_complete
    from stats as st
),

pooled as (
    select
        t.*,
        coalesce(t.n_i, 0) + case when t.use_complete then t.n_c else 0 end as n_used,
        coalesce(t.s_i, 0) + case when t.use_complete then t.s_c else 0 end as s_used
    from tested as t
)

select
    p.vin,
    p.n_c as zero_current_frames,
    coalesce(p.n_i, 0) as idle_current_frames,
    p.use_complete as is_charge_complete_used,
    case when p.n_used > 0 then p.s_used / (p.n_used + {{ shrink }}) end as current_offset_a,
    case when p.n_used > 0 then {{ sigma }} / sqrt(p.n_used + {{ shrink }}) end as current_offset_se_a,
    -- what the charge-complete frames carry beyond the offset when they were dropped: the
    -- standby load the pack feeds with the charger connected, A (null when they were used)
    case
        when not p.use_complete and p.n_c > 0
            then p.mean_c_a - coalesce(p.s_used / nullif(p.n_used + {{ shrink }}, 0), 0)
    end as standby_load_a
from pooled as p
