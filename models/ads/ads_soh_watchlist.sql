-- Vehicles to act on, as of each vehicle's latest SOH day: below the warranty limit
-- (soh_warranty_pct, 80 %), at risk of it (the 90 % interval reaches below it), or fading fast
-- (soh_fast_fade_pp, 3 pp, lost in soh_fast_fade_days, 30 days). One row per flagged vehicle.

{%- set warranty = var('soh_warranty_pct') -%}
{%- set fade_pp = var('soh_fast_fade_pp') -%}
{%- set fade_days = var('soh_fast_fade_days') %}

with

latest as (
    select
        s.vin,
        max(s.date) as as_of_date
    from {{ ref('dwd_vehicle_soh') }} as s
    group by s.vin
),

now_and_then as (
    select
        l.vin,
        l.as_of_date,
        n.soh_pct,
        n.soh_lower_pct,
        n.soh_upper_pct,
        n.observation_count,
        n.last_observation_date,
        n.model_version,
        p.soh_pct as soh_before_pct
    from latest as l
    inner join {{ ref('dwd_vehicle_soh') }} as n on l.vin = n.vin and l.as_of_date = n.date
    left join {{ ref('dwd_vehicle_soh') }} as p
        on l.vin = p.vin and p.date = {{ dbt.dateadd('day', -fade_days, 'l.as_of_date') }}
),

flagged as (
    select
        t.*,
        t.soh_pct - t.soh_before_pct as change_pp,
        t.soh_pct < {{ warranty }} as is_below_warranty,
        t.soh_pct >= {{ warranty }} and t.soh_lower_pct < {{ warranty }} as is_at_risk,
        coalesce(t.soh_before_pct - t.soh_pct >= {{ fade_pp }}, false) as is_fast_fade
    from now_and_then as t
)

select
    f.vin,
    v.vehicle_model,
    f.as_of_date,
    f.soh_pct,
    f.soh_lower_pct,
    f.soh_upper_pct,
    f.soh_before_pct,
    f.change_pp,
    f.is_below_warranty,
    f.is_at_risk,
    f.is_fast_fade,
    case
        when f.is_below_warranty then 'below_warranty'
        when f.is_fast_fade then 'fast_fade'
        else 'at_risk'
    end as primary_reason,
    f.observation_count,
    f.last_observation_date,
    f.model_version
from flagged as f
inner join {{ ref('dws_vehicle') }} as v on f.vin = v.vin
where f.is_below_warranty or f.is_at_risk or f.is_fast_fade
