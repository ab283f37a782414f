{%- set budget = var('warning_budget_l2_per_1000', 1.0) -%}

-- How often each threshold rule (seed warning_rules) and each statistical detector fires in this
-- fleet, per vehicle model and chemistry, so that an operator sees a noisy rule: vehicle-days it
-- fired on per 1,000 vehicle-days and the share of the scope's vehicles it fired on, at any
-- level, at its configured level >= 2 and at level >= 2 after the fleet calibration
-- (dwd_rule_episode_calibrated, dwd_battery_detector_daily). Every enabled rule is listed for
-- every scope it applies to, firing or not. A rule is noisy when its configured level >= 2 fires
-- on more vehicle-days than the false-alarm budget warning_budget_l2_per_1000 and on at least
-- rule_routine_min_vehicles vehicles of the scope.

with

vehicles as (
    {{ vehicle_days_by_scope() }}
),

scopes as (
    select
        v.vehicle_model,
        v.chemistry,
        count(*) as vehicles,
        sum(v.vehicle_days) as vehicle_days
    from vehicles as v
    group by v.vehicle_model, v.chemistry
),

sources as (
    -- every enabled rule in the scopes it applies to, and every detector everywhere
    select
        'rule' as source_type,
        r.rule_id as source_name,
        r.warning_type,
        cast(r.level as integer) as configured_level,
        s.vehicle_model,
        s.chemistry
    from {{ rules_relation('warning_rules') }} as r
    inner join scopes as s
        on
            (r.chemistry in ('ALL', '') or r.chemistry is null or r.chemistry = s.chemistry)
            and (r.vehicle_model in ('ALL', '') or r.vehicle_model is null or r.vehicle_model = s.vehicle_model)
    where cast(r.enabled as {{ str_type() }}) in ('true', 'True', '1')
    union all
    select
        'detector' as source_type,
        d.detector as source_name,
        d.detector as warning_type,
        cast(null as integer) as configured_level,
        s.vehicle_model,
        s.chemistry
    from (
        select 'cell_voltage_outlier' as detector
        union all
        select 'probe_hot' as detector
        union all
        select 'temperature_sensor_fault' as detector
        union all
        select 'insulation_decline' as detector
        union all
        select 'capacity_fade_outlier' as detector
    ) as d
    cross join scopes as s
),

fired as (
    -- one row per source, vehicle and day it fired on: its highest configured and final level
    select
        'rule' as source_type,
        e.rule_id as source_name,
        e.vin,
        e.start_date as date,
        max(e.configured_level) as configured_level,
        max(e.level) as level
    from {{ ref('dwd_rule_episode_calibrated') }} as e
    group by e.rule_id, e.vin, e.start_date
    union all
    select
        'detector' as source_type,
        d.detector as source_name,
        d.vin,
        d.date,
        max(d.level) as configured_level,
        max(d.level) as level
    from {{ ref('dwd_battery_detector_daily') }} as d
    group by d.detector, d.vin, d.date
),

per_scope as (
    select
        f.source_type,
        f.source_name,
        v.vehicle_model,
        v.chemistry,
        count(*) as firing_vehicle_days,
        count(distinct f.vin) as firing_vehicles,
        sum(case when f.configured_level >= 2 then 1 else 0 end) as configured_level2_vehicle_days,
        sum(case when f.level >= 2 then 1 else 0 end) as level2_vehicle_days,
        count(distinct case when f.level >= 2 then f.vin end) as level2_vehicles
    from fired as f
    inner join vehicles as v on f.vin = v.vin
    group by f.source_type, f.source_name, v.vehicle_model, v.chemistry
)

select
    s.source_type,
    s.source_name,
    s.warning_type,
    s.configured_level,
    s.vehicle_model,
    s.chemistry,
    sc.vehicles,
    sc.vehicle_days,
    coalesce(p.firing_vehicle_days, 0) as firing_vehicle_days,
    1000.0 * coalesce(p.firing_vehicle_days, 0) / sc.vehicle_days as firing_per_1000,
    coalesce(p.firing_vehicles, 0) as firing_vehicles,
    1.0 * coalesce(p.firing_vehicles, 0) / sc.vehicles as firing_vehicle_share,
    1000.0 * coalesce(p.configured_level2_vehicle_days, 0) / sc.vehicle_days as configured_level2_per_1000,
    1000.0 * coalesce(p.level2_vehicle_days, 0) / sc.vehicle_days as level2_per_1000,
    coalesce(p.level2_vehicles, 0) as level2_vehicles,
    1000.0 * coalesce(p.configured_level2_vehicle_days, 0) / sc.vehicle_days > {{ budget }}
    and coalesce(p.firing_vehicles, 0) >= {{ var('rule_routine_min_vehicles', 3) }} as is_noisy
from sources as s
inner join scopes as sc on s.vehicle_model = sc.vehicle_model and s.chemistry = sc.chemistry
left join per_scope as p
    on
        s.source_type = p.source_type
        and s.source_name = p.source_name
        and s.vehicle_model = p.vehicle_model
        and s.chemistry = p.chemistry
