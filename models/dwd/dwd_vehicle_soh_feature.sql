{{
    config(
        pre_hook="{{ lifetime_delete_from() }}",
        **day_incremental('date', deletes_first=true)
    )
}}

{%- set start = lifetime_start_date() -%}

-- Ageing features of the SOH model, one row per vehicle and day: every day of the fleet's data
-- from the vehicle's first day, including days the vehicle did not report (parked: its counters
-- carry over from its last active day) for up to soh_max_stale_days after its last frame.
-- Rebuilt from the first day dwd_vehicle_lifetime rebuilds (every later day depends on it).

with

fleet_days as (
    select distinct d.date
    from {{ ref('dwd_vehicle_daily') }} as d
    where {% if start %}d.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
),

life as (
    -- the lifetime rows of the rebuilt range, and each vehicle's last row before it
    select l.*
    from {{ ref('dwd_vehicle_lifetime') }} as l
    where {% if start %}l.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
    {%- if start %}
    union all
    select l.*
    from {{ ref('dwd_vehicle_lifetime') }} as l
    inner join (
        select
            p.vin,
            max(p.date) as date
        from {{ ref('dwd_vehicle_lifetime') }} as p
        where p.date < cast('{{ start }}' as date)
        group by p.vin
    ) as m on l.vin = m.vin and l.date = m.date
    {%- endif %}
),

spans as (
    select
        l.vin,
        min(l.date) as first_date,
        max(l.date) as last_date,
        -- the last active day before the rebuilt range (none on a full build)
        {%- if start %}
            max(case when l.date < cast('{{ start }}' as date) then l.date end) as prior_date
        {%- else %}
            cast(null as date) as prior_date
        {%- endif %}
    from life as l
    group by l.vin
),

spine as (
    select
        s.vin,
        s.prior_date,
        fd.date
    from spans as s
    inner join fleet_days as fd
        on
            s.first_date <= fd.date
            and {{ dbt.dateadd('day', var('soh_max_stale_days'), 's.last_date') }} >= fd.date
),

as_of as (
    -- the vehicle's last active day up to each day
    select
        sp.vin,
        sp.date,
        coalesce(
            max(l.date) over (
                partition by sp.vin order by sp.date rows between unbounded preceding and current row
            ),
            sp.prior_date
        ) as active_date
    from spine as sp
    left join life as l on sp.vin = l.vin and sp.date = l.date
)

select
    a.vin,
    a.date,
    a.active_date,
    {{ dbt.datediff('a.active_date', 'a.date', 'day') }} as days_since_active,  -- noqa: LT05
    v.vehicle_model,
    v.chemistry,
    v.usage_type,
    v.rated_capacity_ah,
    {{ dbt.datediff('v.in_service_date', 'a.date', 'day') }} as days_in_service,  -- noqa: LT05
    l.odometer_km,
    l.odometer_km / greatest({{ dbt.datediff('v.in_service_date', 'a.date', 'day') }}, 1) as km_per_day,
    l.cum_mileage_km,
    l.equivalent_full_cycles,
    l.cum_ah_throughput,
    l.cum_charge_count as charge_count,
    l.usage_behavior_score,
    l.lifetime_mean_temp_c,
    l.cum_charged_ah_dc / nullif(l.cum_charged_ah, 0) as fast_charge_share,
    l.cum_high_c_rate_charged_ah / nullif(l.cum_charged_ah, 0) as high_c_rate_share,
    l.cum_high_temp_hours / nullif(l.cum_online_hours, 0) as high_temp_share,
    l.cum_deep_discharge_hours / nullif(l.cum_online_hours, 0) as deep_discharge_share,
    l.cum_high_soc_rest_hours / nullif(l.cum_elapsed_hours, 0) as high_soc_rest_share
from as_of as a
inner join life as l on a.vin = l.vin and a.active_date = l.date
inner join {{ ref('dws_vehicle') }} as v on a.vin = v.vin
where {% if start %}a.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
