-- SOH by operating condition for BI: capacity observations grouped by pack temperature band,
-- charger type (AC/DC; none for discharge windows), C-rate band, season and label type
-- (charge / discharge), per vehicle, per vehicle model and for the
-- fleet. deviation_pp = label - the model's SOH of that vehicle-day: how much capacity a
-- condition shows against the vehicle's estimated health (cold charges show less).

{%- set conditions = ['temperature_band', 'charger_type', 'c_rate_band', 'season', 'observation_type'] -%}
{%- set scopes = [('vehicle', 'l.vin'), ('vehicle_model', 'l.vehicle_model'), ('fleet', "'ALL'")] %}

with

labelled as (
    select
        o.vin,
        o.vehicle_model,
        o.temperature_band,
        o.charger_type,
        o.c_rate_band,
        o.season,
        o.observation_type,
        o.soh_obs_pct,
        o.soh_obs_pct - s.soh_pct as deviation_pp
    from {{ ref('dwd_capacity_observation') }} as o
    inner join {{ ref('dwd_vehicle_soh') }} as s on o.vin = s.vin and o.start_date = s.date
    where o.capacity_reject_reason is null
)

{%- for scope, key in scopes %}
    {%- set outer = loop %}
    {%- for cond in conditions %}
        select
            '{{ scope }}' as scope,
            cast({{ key }} as {{ str_type() }}) as scope_key,
            '{{ cond }}' as condition_type,
            cast(l.{{ cond }} as {{ str_type() }}) as condition_value,
            count(distinct l.vin) as vehicles,
            count(*) as observations,
            avg(l.soh_obs_pct) as soh_obs_mean_pct,
            {{ percentile_cont('l.soh_obs_pct', 0.5) }} as soh_obs_median_pct,
            avg(l.deviation_pp) as deviation_mean_pp,
            stddev_samp(l.deviation_pp) as deviation_sd_pp
        from labelled as l
        group by {{ key }}, l.{{ cond }}
        {%- if not (outer.last and loop.last) %}
            union all
        {%- endif %}
    {%- endfor %}
{%- endfor %}
