{%- set p = var('risk_level_probability', {1: 0.1, 2: 0.4, 3: 0.9}) -%}

-- A daily risk score per vehicle for the monitoring platform: every vehicle-day of the SOH
-- features (parked days included), with the warnings active that day (ads_battery_warning,
-- from the day it starts to the day it ends). risk_score = 100 x (1 - prod(1 - p_level)) over
-- the active warnings, p = risk_level_probability (a level-1 notice 0.1, level 2 0.4, level 3
-- 0.9): one act-now warning outweighs any number of notices, two causes count more than one.

with

spine as (
    select
        f.vin,
        f.date
    from {{ ref('dwd_vehicle_soh_feature') }} as f
),

active as (
    select
        s.vin,
        s.date,
        w.warning_type,
        w.level
    from spine as s
    inner join {{ ref('ads_battery_warning') }} as w
        on
            s.vin = w.vin
            and cast(w.start_time as date) <= s.date
            and cast(w.end_time as date) >= s.date
)

select
    s.vin,
    s.date,
    coalesce(max(a.level), 0) as max_level,
    count(a.level) as active_warnings,
    count(distinct a.warning_type) as active_warning_types,
    100 * (1 - exp(sum(
        ln(1 - case a.level when 1 then {{ p[1] }} when 2 then {{ p[2] }} when 3 then {{ p[3] }} else 0 end)
    ))) as risk_score
from spine as s
left join active as a on s.vin = a.vin and s.date = a.date
group by s.vin, s.date
