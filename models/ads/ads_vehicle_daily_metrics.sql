-- The monitoring platform's daily operating indicators per vehicle, the BI-facing subset of
-- dwd_vehicle_daily (contract: landing.md section 3). Rebuilt from DWD on every run: one row per
-- vehicle and day with data, a few million rows a year for a 10,000-vehicle fleet.

select
    d.vin,
    d.date,
    cast(d.mileage_km as double) as mileage_km,
    cast(d.driving_hours as double) as driving_hours,
    cast(d.charging_hours as double) as charging_hours,
    cast(d.charge_count as integer) as charge_count,
    cast(d.charged_kwh as double) as charged_kwh,
    cast(d.charge_count_dc as integer) as charge_count_dc,
    cast(d.charged_kwh_dc as double) as charged_kwh_dc,
    cast(d.online_hours as double) as online_hours,
    cast(d.energy_kwh_per_100km as double) as energy_kwh_per_100km,
    cast(d.soc_min_pct as double) as soc_min_pct,
    cast(d.soc_max_pct as double) as soc_max_pct,
    cast(d.max_temp_c as double) as max_temp_c,
    cast(d.max_temp_diff_c as double) as max_temp_diff_c,
    cast(d.max_cell_spread_mv as double) as max_cell_spread_mv,
    cast(d.min_insulation_kohm as double) as min_insulation_kohm,
    cast(d.max_alarm_level as integer) as max_alarm_level,
    cast(d.alarm_level1_frames + d.alarm_level2_frames + d.alarm_level3_frames as bigint) as alarm_frames,
    cast(d.completeness_pct as double) as completeness_pct,
    cast(d.rejected_pct as double) as rejected_pct
from {{ ref('dwd_vehicle_daily') }} as d
