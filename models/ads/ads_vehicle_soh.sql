-- Daily SOH per vehicle for BI (contract: landing.md section 3), from dwd_vehicle_soh: the
-- model's estimate with its 90 % interval, the capacity it implies, and the observations
-- behind it. One row per vehicle and day, including days without a capacity observation.

select
    s.vin,
    cast(s.date as date) as as_of_date,
    cast(s.soh_pct as double) as soh_pct,
    cast(s.soh_lower_pct as double) as soh_lower_pct,
    cast(s.soh_upper_pct as double) as soh_upper_pct,
    cast(s.capacity_ah as double) as capacity_ah,
    cast(s.model_version as {{ str_type() }}) as model_version,
    cast(v.vehicle_model as {{ str_type() }}) as vehicle_model,
    cast(v.chemistry as {{ str_type() }}) as chemistry,
    cast(s.observation_count as bigint) as observation_count,
    cast(s.last_observation_date as date) as last_observation_date,
    cast(s.raw_observation_pct as double) as raw_observation_pct,
    cast(s.rolling_median_observation_pct as double) as rolling_median_observation_pct
from {{ ref('dwd_vehicle_soh') }} as s
inner join {{ ref('dws_vehicle') }} as v on s.vin = v.vin
