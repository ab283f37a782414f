-- Fleet-level daily KPIs for the monitoring platform's overview, per vehicle model and for the
-- whole fleet (vehicle_model = 'ALL'): active vehicles, mileage, hours, charging, consumption,
-- alarms and data quality. Rebuilt from dwd_vehicle_daily on every run. Float columns are summed
-- in fixed point (exact_sum): a parallel float sum differs in its last digit from run to run.

with

daily as (
    select
        d.*,
        v.vehicle_model
    from {{ ref('dwd_vehicle_daily') }} as d
    inner join {{ ref('dws_vehicle') }} as v on d.vin = v.vin
),

by_model as (
    select
        dl.date,
        dl.vehicle_model,
        count(*) as active_vehicles,
        {{ exact_sum('dl.mileage_km') }} as mileage_km,
        {{ exact_sum('dl.driving_hours') }} as driving_hours,
        {{ exact_sum('dl.charging_hours') }} as charging_hours,
        sum(dl.charge_count) as charge_count,
        sum(dl.charge_count_dc) as charge_count_dc,
        {{ exact_sum('dl.charged_kwh') }} as charged_kwh,
        {{ exact_sum('dl.charged_kwh_dc') }} as charged_kwh_dc,
        {{ exact_sum('dl.drive_energy_out_kwh - dl.drive_energy_regen_kwh') }} as drive_energy_net_kwh,
        {{ exact_sum('dl.trip_distance_km') }} as trip_distance_km,
        sum(case when dl.max_alarm_level >= 1 then 1 else 0 end) as vehicles_with_alarm,
        sum(case when dl.max_alarm_level = 3 then 1 else 0 end) as vehicles_with_level3_alarm,
        sum(dl.frames_received) as frames_received,
        sum(dl.frames_rejected) as frames_rejected,
        sum(dl.report_slots_received) as report_slots_received,
        {{ exact_sum('dl.report_slots_expected') }} as report_slots_expected
    from daily as dl
    group by dl.date, dl.vehicle_model
),

with_all as (
    select * from by_model
    union all
    select
        b.date,
        'ALL' as vehicle_model,
        sum(b.active_vehicles) as active_vehicles,
        {{ exact_sum('b.mileage_km') }} as mileage_km,
        {{ exact_sum('b.driving_hours') }} as driving_hours,
        {{ exact_sum('b.charging_hours') }} as charging_hours,
        sum(b.charge_count) as charge_count,
        sum(b.charge_count_dc) as charge_count_dc,
        {{ exact_sum('b.charged_kwh') }} as charged_kwh,
        {{ exact_sum('b.charged_kwh_dc') }} as charged_kwh_dc,
        {{ exact_sum('b.drive_energy_net_kwh') }} as drive_energy_net_kwh,
        {{ exact_sum('b.trip_distance_km') }} as trip_distance_km,
        sum(b.vehicles_with_alarm) as vehicles_with_alarm,
        sum(b.vehicles_with_level3_alarm) as vehicles_with_level3_alarm,
        sum(b.frames_received) as frames_received,
        sum(b.frames_rejected) as frames_rejected,
        sum(b.report_slots_received) as report_slots_received,
        {{ exact_sum('b.report_slots_expected') }} as report_slots_expected
    from by_model as b
    group by b.date
)

select
    w.date,
    w.vehicle_model,
    w.active_vehicles,
    w.mileage_km,
    w.mileage_km / w.active_vehicles as mileage_km_per_vehicle,
    w.driving_hours,
    w.charging_hours,
    w.charge_count,
    w.charge_count_dc,
    w.charged_kwh,
    w.charged_kwh_dc,
    case when w.trip_distance_km > 0 then 100 * w.drive_energy_net_kwh / w.trip_distance_km end
        as energy_kwh_per_100km,
    w.vehicles_with_alarm,
    w.vehicles_with_level3_alarm,
    100.0 * w.frames_rejected / (w.frames_received + w.frames_rejected) as rejected_pct,
    least(100.0, 100.0 * w.report_slots_received / w.report_slots_expected) as completeness_pct
from with_all as w
