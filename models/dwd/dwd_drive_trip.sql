{{
    config(
        pre_hook="{{ dwd_delete_rebuilt_days('start_date') }}",
        **day_incremental('start_date', deletes_first=true)
    )
}}

{%- set gap_s = dwd_segment_gap_s() -%}
{%- set power_out = 'case when n.total_current_a > 0 then n.total_voltage_v * n.total_current_a * n.w_s else 0 end' -%}
{%- set ir_pair = 'case when n.dt_prev_s <= 1.5 * ' ~ var('report_period_s', 10)
    ~ ' and n.dv_prev_v is not null and n.di_prev_a is not null then 1 else 0 end' -%}
{%- set power_in = 'case when n.total_current_a < 0 then -n.total_voltage_v * n.total_current_a * n.w_s else 0 end' -%}

-- One row per driving trip: maximal runs of driving frames (vehicle on, not charging) of a
-- vehicle with no step longer than the segment gap. A trip belongs to the day it starts and is
-- rebuilt whole when it runs past midnight (macros/dwd_window.sql).

with

frames as (
    select
        f.vin,
        f.collect_time,
        f.speed_kmh,
        f.odometer_km,
        f.total_voltage_v,
        f.total_current_a,
        f.soc_pct,
        f.max_temp_c,
        f.min_temp_c,
        {{ epoch_seconds('f.collect_time') }} as t_s
    from {{ ref('dws_realtime_frame') }} as f
    where
        {{ dwd_read_filter('f.collect_date', 'f.collect_time') }}
        -- vehicle started (status nulled by cleaning: fall back to motion), not charging
        and coalesce(f.vehicle_status = 1, f.speed_kmh > 0)
        and coalesce(f.charge_status not in (1, 2), true)
),

steps as (
    select
        f.*,
        f.t_s - lag(f.t_s) over (partition by f.vin order by f.collect_time) as dt_prev_s,
        lead(f.t_s) over (partition by f.vin order by f.collect_time) - f.t_s as dt_next_s,
        -- the pack's response to a change of current between two consecutive frames: over ten
        -- seconds the OCV hardly moves, so dV = -R dI (least squares over the trip below)
        f.total_voltage_v - lag(f.total_voltage_v) over (partition by f.vin order by f.collect_time) as dv_prev_v,
        f.total_current_a - lag(f.total_current_a) over (partition by f.vin order by f.collect_time) as di_prev_a
    from frames as f
),

numbered as (
    select
        s.*,
        sum(case when s.dt_prev_s is null or s.dt_prev_s > {{ gap_s }} then 1 else 0 end)
            over (partition by s.vin order by s.collect_time rows between unbounded preceding and current row)
            as trip_no,
        -- rectangle rule: a frame's power holds until the next frame of the same trip (missing
        -- frames while driving are lost data, the vehicle kept going)
        case when s.dt_next_s <= {{ gap_s }} then s.dt_next_s else 0 end as w_s
    from steps as s
),

trips as (
    select
        n.vin,
        n.trip_no,
        min(n.collect_time) as start_time,
        max(n.collect_time) as end_time,
        max(n.t_s) - min(n.t_s) as duration_s,
        {{ first_non_null('n.odometer_km', 'n.collect_time') }} as start_odometer_km,
        {{ last_non_null('n.odometer_km', 'n.collect_time') }} as end_odometer_km,
        {{ exact_sum('n.speed_kmh * n.w_s', 3) }} / 3600 as distance_speed_km,
        max(n.speed_kmh) as max_speed_kmh,
        {{ exact_sum(power_out, 3) }} / 3600000 as energy_out_kwh,
        {{ exact_sum(power_in, 3) }} / 3600000 as energy_regen_kwh,
        {{ exact_sum('case when n.total_current_a > 0 then n.total_current_a * n.w_s else 0 end', 3) }}
        / 3600 as ah_out,
        {{ exact_sum('case when n.total_current_a < 0 then -n.total_current_a * n.w_s else 0 end', 3) }}
        / 3600 as ah_regen,
        {{ first_non_null('n.soc_pct', 'n.collect_time') }} as start_soc_pct,
        {{ last_non_null('n.soc_pct', 'n.collect_time') }} as end_soc_pct,
        min(n.min_temp_c) as min_temp_c,
        avg((n.max_temp_c + n.min_temp_c) / 2) as mean_temp_c,
        max(n.max_temp_c) as max_temp_c,
        count(*) as frame_count,
        -- the first frame: after a rest, the pack's voltage near its OCV (dwd_capacity_observation)
        {{ first_non_null('n.total_voltage_v', 'n.collect_time') }} as start_voltage_v,
        {{ first_non_null('n.total_current_a', 'n.collect_time') }} as start_current_a,
        {{ first_non_null('n.min_temp_c', 'n.collect_time') }} as start_temp_c,
        {{ exact_sum(ir_pair ~ ' * n.dv_prev_v * n.di_prev_a', 6) }} as ir_sum_dv_di,
        {{ exact_sum(ir_pair ~ ' * n.di_prev_a * n.di_prev_a', 6) }} as ir_sum_di2,
        sum(
            case
                when n.dt_prev_s > 1.5 * {{ var('report_period_s', 10) }} and n.dt_prev_s <= {{ gap_s }} then 1 else 0
            end
        )
            as gap_count
    from numbered as n
    group by n.vin, n.trip_no
),

final as (
    select
        t.vin,
        t.start_time,
        t.end_time,
        cast(t.start_time as date) as start_date,
        t.duration_s,
        greatest(t.end_odometer_km - t.start_odometer_km, 0) as distance_km,
        t.distance_speed_km,
        case when t.duration_s > 0 then greatest(t.end_odometer_km - t.start_odometer_km, 0) / (t.duration_s / 3600) end
            as avg_speed_kmh,
        t.max_speed_kmh,
        t.energy_out_kwh,
        t.energy_regen_kwh,
        t.energy_out_kwh - t.energy_regen_kwh as energy_net_kwh,
        t.ah_out,
        t.ah_regen,
        case
            when t.end_odometer_km - t.start_odometer_km >= 1
                then 100 * (t.energy_out_kwh - t.energy_regen_kwh) / (t.end_odometer_km - t.start_odometer_km)
        end as energy_kwh_per_100km,
        t.start_soc_pct,
        t.end_soc_pct,
        t.start_soc_pct - t.end_soc_pct as soc_used_pct,
        t.start_odometer_km,
        t.end_odometer_km,
        t.min_temp_c,
        t.mean_temp_c,
        t.max_temp_c,
        t.frame_count,
        t.gap_count,
        t.ir_sum_dv_di,
        t.ir_sum_di2,
        t.start_voltage_v,
        t.start_current_a,
        t.start_temp_c
    from trips as t
)

select * from final
where {{ dwd_rebuild_filter('start_date') }}
