-- Fleet SOH distribution for BI: percentiles of the vehicles' SOH on the last day of each month,
-- by vehicle model and age band (years in service), plus vehicle_model / age_band = 'ALL'.

{%- set groups = [
    ('f.vehicle_model', 'f.age_band'),
    ('f.vehicle_model', "'ALL'"),
    ("'ALL'", 'f.age_band'),
    ("'ALL'", "'ALL'"),
] %}

with

month_end as (
    select
        {{ period_start('month', 's.date') }} as month_start,
        max(s.date) as as_of_date
    from {{ ref('dwd_vehicle_soh') }} as s
    group by {{ period_start('month', 's.date') }}
),

fleet as (
    select
        m.month_start,
        m.as_of_date,
        s.vin,
        s.soh_pct,
        ft.vehicle_model,
        case
            when ft.days_in_service < 365 then 'under_1y'
            when ft.days_in_service < 730 then '1_2y'
            when ft.days_in_service < 1095 then '2_3y'
            when ft.days_in_service < 1826 then '3_5y'
            else 'over_5y'
        end as age_band
    from month_end as m
    inner join {{ ref('dwd_vehicle_soh') }} as s on m.as_of_date = s.date
    inner join {{ ref('dwd_vehicle_soh_feature') }} as ft on s.vin = ft.vin and s.date = ft.date
)

{%- for model_key, age_key in groups %}
    select
        f.month_start,
        f.as_of_date,
        cast({{ model_key }} as {{ str_type() }}) as vehicle_model,
        cast({{ age_key }} as {{ str_type() }}) as age_band,
        count(*) as vehicles,
        {{ exact_sum('f.soh_pct', 9) }} / count(f.soh_pct) as soh_mean_pct,
        {%- for p in [10, 25, 50, 75, 90] %}
            {{ percentile_cont('f.soh_pct', p / 100) }} as soh_p{{ p }}_pct,
        {%- endfor %}
        cast(sum(case when f.soh_pct < {{ var('soh_warranty_pct') }} then 1 else 0 end) as bigint)
            as vehicles_below_warranty
    from fleet as f
    group by f.month_start, f.as_of_date, {{ model_key }}, {{ age_key }}
    {%- if not loop.last %}
        union all
    {%- endif %}
{%- endfor %}
