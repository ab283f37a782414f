{{
    config(
        pre_hook="{{ dwd_delete_rebuilt_days('date') }}",
        **day_incremental('date', deletes_first=true)
    )
}}

{%- set gap_s = dwd_segment_gap_s() -%}
{%- set period = var('report_period_s', 10) -%}
{#- an idle frame: vehicle off, not charging (dwd_vehicle_current_offset's certain zero) -#}
{%- set idle = "w.vehicle_status = 2 and w.charge_status = 3" -%}
{%- set high_c_rate = var('behavior_high_c_rate', 1.0) -%}
{%- set high_c_rate_ah = "case when s.max_c_rate >= " ~ high_c_rate ~ " then s.charged_ah else 0 end" -%}

-- The monitoring platform's operating indicators, one row per vehicle and day with data.
-- Frame-based figures (hours, SOC, temperatures, alarms, completeness) come from the day's own
-- frames; charge and trip figures from the segments and trips that start that day. Rebuilt on
-- the same days as the segments (a segment over midnight is rebuilt the next day).

with

frames as (
    select
        f.vin,
        f.collect_date as date,
        f.collect_time,
        f.cmd,
        f.charge_status,
        f.vehicle_status,
        f.speed_kmh,
        f.odometer_km,
        f.soc_pct,
        f.max_temp_c,
        f.min_temp_c,
        f.cell_voltage_max_v,
        f.cell_voltage_min_v,
        f.insulation_resistance_kohm,
        f.max_alarm_level,
        f.general_alarm_flags,
        f.is_cleaned,
        f.total_current_a,
        {{ epoch_seconds('f.collect_time') }} as t_s
    from {{ ref('dws_realtime_frame') }} as f
    where {{ dwd_rebuild_filter('f.collect_date') }}
),

stepped as (
    -- the step to the next frame of the day (windows stay inside the day: days are independent)
    select
        f.*,
        lead(f.t_s) over (partition by f.vin, f.date order by f.collect_time) - f.t_s as step_s
    from frames as f
),

weighted as (
    select
        st.*,
        -- the time a frame stands for: up to the next frame of the same run, one report period
        -- for the last frame of a run
        coalesce(case when st.step_s <= {{ gap_s }} then st.step_s end, {{ period }}) as w_s,
        st.charge_status in (1, 2) as is_charging,
        -- a rest inside the day (a step longer than the segment gap) and the SOC it starts at
        case when st.step_s > {{ gap_s }} then st.step_s end as rest_after_s,
        coalesce(st.vehicle_status = 1, st.speed_kmh > 0) and coalesce(st.charge_status not in (1, 2), true)
            as is_driving
    from stepped as st
),

frame_day as (
    select
        w.vin,
        w.date,
        count(*) as frames_received,
        count(distinct floor(w.t_s / {{ period }})) as report_slots_received,
        sum(w.w_s) / {{ period }} as report_slots_expected,
        sum(case when w.is_cleaned then 1 else 0 end) as frames_cleaned,
        sum(w.w_s) / 3600 as online_hours,
        sum(case when w.is_driving then w.w_s else 0 end) / 3600 as driving_hours,
        sum(case when w.is_charging then w.w_s else 0 end) / 3600 as charging_hours,
        min(w.collect_time) as first_frame_time,
        max(w.collect_time) as last_frame_time,
        min(w.odometer_km) as odometer_min_km,
        max(w.odometer_km) as odometer_max_km,
        {{ first_non_null('w.soc_pct', 'w.collect_time') }} as first_soc_pct,
        {{ last_non_null('w.soc_pct', 'w.collect_time') }} as last_soc_pct,
        min(w.soc_pct) as soc_min_pct,
        max(w.soc_pct) as soc_max_pct,
        max(w.max_temp_c) as max_temp_c,
        min(w.min_temp_c) as min_temp_c,
        max(w.max_temp_c - w.min_temp_c) as max_temp_diff_c,
        max(w.cell_voltage_max_v - w.cell_voltage_min_v) * 1000 as max_cell_spread_mv,
        min(w.insulation_resistance_kohm) as min_insulation_kohm,
        max(w.max_alarm_level) as max_alarm_level,
        {%- for level in [1, 2, 3] %}
            sum(case when w.max_alarm_level = {{ level }} then 1 else 0 end) as alarm_level{{ level }}_frames,
        {%- endfor %}
        {%- for bit, name in gbt32960_alarm_bits() %}
            sum(case when {{ bit_is_set('w.general_alarm_flags', bit) }} then 1 else 0 end) as alarm_{{ name }}_frames,
        {%- endfor %}
        -- usage-behaviour exposure of the day (dwd_vehicle_lifetime accumulates it)
        sum(case when w.max_temp_c >= {{ var('behavior_high_temp_c', 40) }} then w.w_s else 0 end) / 3600
            as high_temp_hours,
        sum(case when w.soc_pct <= {{ var('behavior_deep_discharge_soc', 10) }} then w.w_s else 0 end) / 3600
            as deep_discharge_hours,
        -- temperature exposure: hours with both probe extremes known and their degC-hours
        sum(case when w.max_temp_c is not null and w.min_temp_c is not null then w.w_s else 0 end) / 3600
            as temp_known_hours,
        sum(
            case
                when w.max_temp_c is not null and w.min_temp_c is not null
                    then w.w_s * (w.max_temp_c + w.min_temp_c) / 2
                else 0
            end
        ) / 3600 as temp_c_hours,
        sum(case when w.soc_pct >= {{ var('behavior_high_soc_rest_pct', 90) }} then w.rest_after_s else 0 end) / 3600
            as high_soc_rest_hours_in_day,
        -- current-sensor zero drift: frames with the charger idle after "charge complete" carry
        -- no true current, so what the sensor reports there is its offset
        sum(case when w.charge_status = 4 and w.total_current_a is not null then 1 else 0 end)
            as zero_current_frames,
        {{ exact_sum('case when w.charge_status = 4 then w.total_current_a else 0 end', 3) }} as zero_current_sum_a,
        {{ exact_sum('case when w.charge_status = 4 then w.total_current_a * w.total_current_a else 0 end', 4) }}
            as zero_current_sumsq_a2,
        -- idle frames: vehicle off (vehicle_status 2), not charging (charge_status 3), e.g. a
        -- charger pausing: no load and no charger, the only frames whose true current is zero
        -- for certain (a charge-complete frame may carry the vehicle's standby load)
        sum(case when {{ idle }} and w.total_current_a is not null then 1 else 0 end)
            as idle_current_frames,
        {{ exact_sum('case when ' ~ idle ~ ' then w.total_current_a else 0 end', 3) }}
            as idle_current_sum_a,
        {{ exact_sum('case when ' ~ idle ~ ' then w.total_current_a * w.total_current_a else 0 end', 4) }}
            as idle_current_sumsq_a2
    from weighted as w
    group by w.vin, w.date
),

rejected_day as (
    select
        c.vin,
        c.collect_date as date,
        count(*) as frames_rejected
    from {{ ref('dws_realtime_checked') }} as c
    where c.reject_reason is not null and {{ dwd_rebuild_filter('c.collect_date') }}
    group by c.vin, c.collect_date
),

charge_day as (
    select
        s.vin,
        s.start_date as date,
        count(*) as charge_count,
        sum(case when s.charger_type = 'AC' then 1 else 0 end) as charge_count_ac,
        sum(case when s.charger_type = 'DC' then 1 else 0 end) as charge_count_dc,
        {{ exact_sum('s.charged_kwh') }} as charged_kwh,
        {{ exact_sum("case when s.charger_type = 'AC' then s.charged_kwh else 0 end") }} as charged_kwh_ac,
        {{ exact_sum("case when s.charger_type = 'DC' then s.charged_kwh else 0 end") }} as charged_kwh_dc,
        {{ exact_sum('s.charged_ah') }} as charged_ah,
        {{ exact_sum("case when s.charger_type = 'DC' then s.charged_ah else 0 end") }} as charged_ah_dc,
        {{ exact_sum(high_c_rate_ah) }} as high_c_rate_charged_ah,
        sum(case when s.is_soh_eligible then 1 else 0 end) as soh_eligible_charge_count
    from {{ ref('dwd_charge_segment') }} as s
    where {{ dwd_rebuild_filter('s.start_date') }}
    group by s.vin, s.start_date
),

trip_day as (
    select
        t.vin,
        t.start_date as date,
        count(*) as trip_count,
        {{ exact_sum('t.distance_km') }} as trip_distance_km,
        {{ exact_sum('t.energy_out_kwh') }} as drive_energy_out_kwh,
        {{ exact_sum('t.energy_regen_kwh') }} as drive_energy_regen_kwh,
        {{ exact_sum('t.energy_net_kwh') }} as drive_energy_net_kwh,
        {{ exact_sum('t.ah_out') }} as drive_ah_out,
        {{ exact_sum('t.ah_regen') }} as drive_ah_regen
    from {{ ref('dwd_drive_trip') }} as t
    where {{ dwd_rebuild_filter('t.start_date') }}
    group by t.vin, t.start_date
)

select
    d.vin,
    d.date,
    -- mileage: the (repaired) odometer's advance within the day
    coalesce(d.odometer_max_km - d.odometer_min_km, 0) as mileage_km,
    d.odometer_max_km,
    d.online_hours,
    d.driving_hours,
    d.charging_hours,
    coalesce(t.trip_count, 0) as trip_count,
    coalesce(t.trip_distance_km, 0) as trip_distance_km,
    coalesce(t.drive_energy_out_kwh, 0) as drive_energy_out_kwh,
    coalesce(t.drive_energy_regen_kwh, 0) as drive_energy_regen_kwh,
    coalesce(t.drive_ah_out, 0) as drive_ah_out,
    coalesce(t.drive_ah_regen, 0) as drive_ah_regen,
    case
        when t.trip_distance_km >= 1 then 100 * t.drive_energy_net_kwh / t.trip_distance_km
    end as energy_kwh_per_100km,
    coalesce(c.charge_count, 0) as charge_count,
    coalesce(c.charge_count_ac, 0) as charge_count_ac,
    coalesce(c.charge_count_dc, 0) as charge_count_dc,
    coalesce(c.charged_kwh, 0) as charged_kwh,
    coalesce(c.charged_kwh_ac, 0) as charged_kwh_ac,
    coalesce(c.charged_kwh_dc, 0) as charged_kwh_dc,
    coalesce(c.charged_ah, 0) as charged_ah,
    coalesce(c.charged_ah_dc, 0) as charged_ah_dc,
    coalesce(c.high_c_rate_charged_ah, 0) as high_c_rate_charged_ah,
    coalesce(c.soh_eligible_charge_count, 0) as soh_eligible_charge_count,
    d.first_soc_pct,
    d.last_soc_pct,
    d.soc_min_pct,
    d.soc_max_pct,
    d.max_temp_c,
    d.min_temp_c,
    d.max_temp_diff_c,
    d.max_cell_spread_mv,
    d.min_insulation_kohm,
    d.max_alarm_level,
    {%- for level in [1, 2, 3] %}
        d.alarm_level{{ level }}_frames,
    {%- endfor %}
    {%- for bit, name in gbt32960_alarm_bits() %}
        d.alarm_{{ name }}_frames,
    {%- endfor %}
    d.high_temp_hours,
    d.deep_discharge_hours,
    d.temp_known_hours,
    d.temp_c_hours,
    d.high_soc_rest_hours_in_day,
    d.zero_current_frames,
    d.zero_current_sum_a,
    d.zero_current_sumsq_a2,
    d.idle_current_frames,
    d.idle_current_sum_a,
    d.idle_current_sumsq_a2,
    d.first_frame_time,
    d.last_frame_time,
    d.frames_received,
    coalesce(r.frames_rejected, 0) as frames_rejected,
    d.frames_cleaned,
    d.report_slots_received,
    d.report_slots_expected,
    least(100.0, 100.0 * d.report_slots_received / d.report_slots_expected) as completeness_pct,
    100.0 * coalesce(r.frames_rejected, 0) / (d.frames_received + coalesce(r.frames_rejected, 0))
        as rejected_pct
from frame_day as d
left join rejected_day as r on d.vin = r.vin and d.date = r.date
left join charge_day as c on d.vin = c.vin and d.date = c.date
left join trip_day as t on d.vin = t.vin and d.date = t.date
