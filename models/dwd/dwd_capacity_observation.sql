-- Capacity observations (SOH labels), one row per SOH-eligible charge segment (and per segment
-- missing only get_charge's SOC window or ΔSOC threshold with soh_label_min_delta_soc points):
-- C = offset-calibrated |I| dt / (delta SOC / 100), SOH_obs = C / rated capacity.
-- A table rebuilt on every run (one narrow row per segment, small next to the frames) so that
-- every observation uses the current-sensor offset as known today: the offset estimate sharpens
-- as charge-complete frames accumulate. Observations failing a capacity screen are kept with
-- capacity_reject_reason; the temperature correction is learnt from the data by the SOH model
-- (dwd_soh_model) rather than assumed, and applied there.

{%- set t_min = var('soh_temp_min_c') -%}
{%- set t_max = var('soh_temp_max_c') %}

with

throughput as (
    -- every segment (eligible or not), with the vehicle's charged Ah up to and including it
    select
        s.vin,
        s.start_time,
        -- typed: an empty segment table (no charging yet) has an untyped date column
        cast(s.start_date as date) as start_date,
        s.end_time,
        s.duration_s,
        s.charger_type,
        s.start_soc_pct,
        s.end_soc_pct,
        s.delta_soc_pct,
        s.charged_ah,
        s.charging_s,
        s.mean_c_rate,
        s.max_c_rate,
        s.min_temp_c,
        s.mean_temp_c,
        s.max_temp_c,
        s.start_odometer_km,
        s.is_soh_eligible,
        s.ineligible_reason,
        sum(s.charged_ah) over (
            partition by s.vin order by s.start_time rows between unbounded preceding and current row
        ) as cum_ah
    from {{ ref('dwd_charge_segment') }} as s
),

segments as (
    -- BMS SOC is a coulomb count recalibrated at a full charge: its error grows with the charge
    -- throughput since the vehicle's last full charge
    select
        t.*,
        t.cum_ah - t.charged_ah - max(case when t.end_soc_pct >= 100 then t.cum_ah end) over (
            partition by t.vin order by t.start_time rows between unbounded preceding and 1 preceding
        ) as ah_since_full_charge
    from throughput as t
),

calibrated as (
    select
        sg.*,
        v.rated_capacity_ah,
        v.chemistry,
        v.vehicle_model,
        o.current_offset_a,
        -- the Hall sensor reads I + offset; charging current is negative, so |I| read is short
        -- by the offset for every second the charge integral covers
        sg.charged_ah + coalesce(o.current_offset_a, 0) * sg.charging_s / 3600 as charged_ah_calibrated
    from segments as sg
    inner join {{ ref('dws_vehicle') }} as v on sg.vin = v.vin
    left join {{ ref('dwd_vehicle_current_offset') }} as o on sg.vin = o.vin
    -- SOH-eligible segments, and those that miss only the SOC window or the ΔSOC threshold of
    -- get_charge but still span soh_label_min_delta_soc: a narrower window is a noisier label,
    -- which the SOH model weights by its ΔSOC instead of dropping
    where
        sg.is_soh_eligible
        or (
            sg.ineligible_reason in ('start_soc_high', 'end_soc_low', 'delta_soc_small')
            and sg.delta_soc_pct >= {{ var('soh_label_min_delta_soc') }}
        )
),

observed as (
    select
        c.*,
        c.charged_ah_calibrated / (c.delta_soc_pct / 100) as capacity_ah,
        100 * c.charged_ah_calibrated / (c.delta_soc_pct / 100) / c.rated_capacity_ah as soh_obs_pct
    from calibrated as c
)

select
    o.vin,
    o.start_time,
    o.start_date,
    o.end_time,
    o.duration_s,
    o.vehicle_model,
    o.chemistry,
    o.charger_type,
    o.start_soc_pct,
    o.end_soc_pct,
    o.delta_soc_pct,
    o.end_soc_pct >= 100 as is_full_charge,
    o.charged_ah,
    o.current_offset_a,
    o.current_offset_a is not null as is_offset_calibrated,
    o.charged_ah_calibrated,
    o.rated_capacity_ah,
    o.capacity_ah,
    o.soh_obs_pct,
    o.mean_c_rate,
    o.max_c_rate,
    o.min_temp_c,
    o.mean_temp_c,
    o.max_temp_c,
    o.start_odometer_km,
    -- charge + discharge throughput since the last full charge in equivalent full cycles
    -- (discharge ~ charge between charges); null until a full charge is seen
    o.ah_since_full_charge / o.rated_capacity_ah as efc_since_full_charge,
    -- operating conditions, the bands ads_soh_by_condition reports by
    case
        when o.mean_temp_c < 0 then 'below_0C'
        when o.mean_temp_c < 10 then '0_10C'
        when o.mean_temp_c < 20 then '10_20C'
        when o.mean_temp_c < 30 then '20_30C'
        when o.mean_temp_c < 40 then '30_40C'
        else 'above_40C'
    end as temperature_band,
    case
        when o.mean_c_rate < 0.2 then 'below_0.2C'
        when o.mean_c_rate < 0.5 then '0.2_0.5C'
        when o.mean_c_rate < 1.0 then '0.5_1C'
        else 'above_1C'
    end as c_rate_band,
    case
        when extract(month from o.start_date) in (12, 1, 2) then 'winter'
        when extract(month from o.start_date) in (3, 4, 5) then 'spring'
        when extract(month from o.start_date) in (6, 7, 8) then 'summer'
        else 'autumn'
    end as season,
    case
        when o.min_temp_c is null or o.max_temp_c is null then 'temperature_unknown'
        when o.min_temp_c < {{ t_min }} or o.max_temp_c > {{ t_max }} then 'temperature_out_of_band'
        when o.mean_c_rate < {{ var('soh_min_c_rate') }} then 'current_too_low'
        when o.max_c_rate > {{ var('soh_max_c_rate') }} then 'current_too_high'
        when o.soh_obs_pct < {{ var('soh_obs_min_pct') }} or o.soh_obs_pct > {{ var('soh_obs_max_pct') }}
            then 'capacity_implausible'
    end as capacity_reject_reason
from observed as o
