-- SOH by time window for BI: per week and month, for each vehicle, each vehicle model and the
-- whole fleet (scope / scope_key), from the daily SOH of dwd_vehicle_soh. The window's SOH is
-- the mean of its daily estimates; soh_end_pct is the estimate on its last day.

{%- set scopes = [
    ('vehicle', 'r.vin'),
    ('vehicle_model', 'r.vehicle_model'),
    ('fleet', "'ALL'"),
] %}

with

daily as (
    select
        s.vin,
        v.vehicle_model,
        s.date,
        s.soh_pct,
        s.soh_lower_pct,
        s.soh_upper_pct,
        case when s.raw_observation_pct is not null then 1 else 0 end as has_observation
    from {{ ref('dwd_vehicle_soh') }} as s
    inner join {{ ref('dws_vehicle') }} as v on s.vin = v.vin
),

windowed as (
    {%- for period in ['week', 'month'] %}
        select
            '{{ period }}' as window_type,
            {{ period_start(period, 'd.date') }} as window_start,
            d.*
        from daily as d
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

ranked as (
    select
        w.*,
        row_number() over (
            partition by w.window_type, w.window_start, w.vin order by w.date desc
        ) as rank_from_end
    from windowed as w
)

{%- for scope, key in scopes %}
    select
        r.window_type,
        r.window_start,
        '{{ scope }}' as scope,
        cast({{ key }} as {{ str_type() }}) as scope_key,
        count(distinct r.vin) as vehicles,
        count(*) as vehicle_days,
        cast(sum(r.has_observation) as bigint) as observation_days,
        avg(r.soh_pct) as soh_mean_pct,
        min(r.soh_pct) as soh_min_pct,
        max(r.soh_pct) as soh_max_pct,
        avg(case when r.rank_from_end = 1 then r.soh_pct end) as soh_end_pct,
        avg(case when r.rank_from_end = 1 then r.soh_lower_pct end) as soh_end_lower_pct,
        avg(case when r.rank_from_end = 1 then r.soh_upper_pct end) as soh_end_upper_pct
    from ranked as r
    group by r.window_type, r.window_start, {{ key }}
    {%- if not loop.last %}
        union all
    {%- endif %}
{%- endfor %}
