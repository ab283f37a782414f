{{
    config(
        pre_hook="{{ lifetime_delete_from() }}",
        **day_incremental('date', deletes_first=true)
    )
}}

{%- set start = lifetime_start_date() -%}
{%- set d = 'decimal(20, 6)' -%}
{%- set counters = [
    ('mileage_km', 'mileage_km'),
    ('charged_ah', 'charged_ah'),
    ('charged_kwh', 'charged_kwh'),
    ('charged_ah_dc', 'charged_ah_dc'),
    ('high_c_rate_charged_ah', 'high_c_rate_charged_ah'),
    ('drive_ah_out', 'drive_ah_out'),
    ('drive_ah_regen', 'drive_ah_regen'),
    ('charge_count', 'charge_count'),
    ('online_hours', 'online_hours'),
    ('high_temp_hours', 'high_temp_hours'),
    ('deep_discharge_hours', 'deep_discharge_hours'),
    ('temp_known_hours', 'temp_known_hours'),
    ('temp_c_hours', 'temp_c_hours'),
    ('high_soc_rest_hours', 'high_soc_rest_hours'),
    ('elapsed_hours', 'elapsed_hours'),
] -%}
{%- set derived = ['high_soc_rest_hours', 'elapsed_hours'] -%}

-- Lifetime counters per vehicle and day, carried from run to run like the platform's
-- circle_ac (cumulative cycles) and ars_use_behavior_score_ac (cumulative behaviour score):
-- a run continues from the last stored row before the first day it rebuilds and never re-reads
-- older history. Increments are rounded to 1e-6 and summed as decimals, so the cumulative values
-- are exact and a day-by-day build equals a full refresh bit for bit. Back-filling a past day
-- recomputes that day and every later day (they all depend on it), from dwd_vehicle_daily only.

with

daily as (
    select
        dd.vin,
        dd.date,
        dd.first_frame_time,
        dd.last_frame_time,
        dd.first_soc_pct,
        dd.last_soc_pct,
        dd.odometer_max_km,
        dd.high_soc_rest_hours_in_day,
        {%- for c, _ in counters if c not in derived %}
            cast(round(dd.{{ c }}, 6) as {{ d }}) as inc_{{ c }},
        {%- endfor %}
        lag(dd.last_frame_time) over (partition by dd.vin order by dd.date) as prev_last_frame_time,
        lag(dd.last_soc_pct) over (partition by dd.vin order by dd.date) as prev_last_soc_pct
    from {{ ref('dwd_vehicle_daily') }} as dd
    where {% if start %}dd.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
),

base as (
    -- state at the end of the last stored day before the rebuilt range (none on a full build)
    {%- if start %}
    select
        t.vin,
        t.last_frame_time,
        t.last_soc_pct,
        t.odometer_km,
        {%- for c, _ in counters %}
        cast(t.cum_{{ c }} as {{ d }}) as cum_{{ c }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ this }} as t
    inner join (
        select
            l.vin,
            max(l.date) as date
        from {{ this }} as l
        where l.date < cast('{{ start }}' as date)
        group by l.vin
    ) as m on t.vin = m.vin and t.date = m.date
    {%- else %}
        select
            dd.vin,
            dd.last_frame_time,
            dd.last_soc_pct,
            dd.odometer_max_km as odometer_km,
            {%- for c, _ in counters %}
                cast(0 as {{ d }}) as cum_{{ c }}{% if not loop.last %},{% endif %}
            {%- endfor %}
        from {{ ref('dwd_vehicle_daily') }} as dd
        where 1 = 0
    {%- endif %}
),

increments as (
    select
        dl.*,
        -- parked at high SOC between the last frame of the previous active day and today's first
        cast(round(
            dl.high_soc_rest_hours_in_day
            + case
                when coalesce(dl.prev_last_soc_pct, b.last_soc_pct) >= {{ var('behavior_high_soc_rest_pct', 90) }}
                    then (
                        {{ epoch_seconds('dl.first_frame_time') }}
                        - {{ epoch_seconds('coalesce(dl.prev_last_frame_time, b.last_frame_time)') }}
                    ) / 3600
                else 0
            end, 6
        ) as {{ d }}) as inc_high_soc_rest_hours,
        -- time since the previous active day's last frame (first day: within the day), so the
        -- sum is the time since the vehicle's first frame
        cast(round(
            (
                {{ epoch_seconds('dl.last_frame_time') }}
                - {{ epoch_seconds('coalesce(dl.prev_last_frame_time, b.last_frame_time, dl.first_frame_time)') }}
            ) / 3600,
            6
        ) as {{ d }}) as inc_elapsed_hours
    from daily as dl
    left join base as b on dl.vin = b.vin
),

cumulative as (
    select
        i.vin,
        i.date,
        {%- for c, _ in counters %}
            coalesce(b.cum_{{ c }}, 0) + sum(i.inc_{{ c }}) over w as cum_{{ c }},
        {%- endfor %}
        coalesce(
            max(i.odometer_max_km) over w,
            b.odometer_km
        ) as odometer_km,
        i.last_frame_time,
        i.last_soc_pct
    from increments as i
    left join base as b on i.vin = b.vin
    window w as (partition by i.vin order by i.date rows between unbounded preceding and current row)
),

final as (
    select
        c.vin,
        c.date,
        {{ dbt.datediff('v.in_service_date', 'c.date', 'day') }} as days_in_service,  -- noqa: LT05
        c.odometer_km,
        {%- for c_, _ in counters %}
            cast(c.cum_{{ c_ }} as double) as cum_{{ c_ }},
        {%- endfor %}
        -- throughput counts every ampere-hour through the pack: charging, driving and regeneration
        cast(c.cum_charged_ah + c.cum_drive_ah_out + c.cum_drive_ah_regen as double) as cum_ah_throughput,
        cast(c.cum_charged_ah + c.cum_drive_ah_out + c.cum_drive_ah_regen as double)
        / (2 * v.rated_capacity_ah) as equivalent_full_cycles,
        {{ usage_behavior_score('c') }} as usage_behavior_score,
        -- mean pack temperature over the reported time (an Arrhenius exposure for SOH)
        cast(c.cum_temp_c_hours as double) / nullif(cast(c.cum_temp_known_hours as double), 0)
            as lifetime_mean_temp_c,
        c.last_frame_time,
        c.last_soc_pct
    from cumulative as c
    inner join {{ ref('dws_vehicle') }} as v on c.vin = v.vin
)

select * from final
