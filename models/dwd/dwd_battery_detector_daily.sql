{{
    config(
        pre_hook="{{ lifetime_delete_from() }}",
        **day_incremental('date', deletes_first=true)
    )
}}

{%- set start = lifetime_start_date() -%}
{%- set base_days = var('detector_baseline_days', 30) -%}
{%- set ins_days = var('detector_insulation_days', 14) -%}
{#- the first day each input is read from: the baseline (trend) window before the first rebuilt day -#}
{%- set cells_from = dbt.dateadd('day', -base_days, "cast('" ~ start ~ "' as date)") if start else none -%}
{%- set ins_from = dbt.dateadd('day', -ins_days, "cast('" ~ start ~ "' as date)") if start else none -%}

-- Statistical warning detectors, one row per vehicle, day and detector that fired (level 1..3):
--   cell_voltage_outlier  a cell below its pack at rest, repeatedly the lowest, or drifting down
--                         against its own baseline (micro-short / self-discharge, a weak cell)
--   probe_hot             a probe running hot against its pack at rest, against its own
--                         baseline (local heating: a thermal-runaway precursor)
--   temperature_sensor_fault  a probe missing, stuck while its pack's temperature moved, or
--                         jumping far from its pack
--   insulation_decline    the trend of the day's lowest insulation (ohm/V) heading for the
--                         100 ohm/V floor of UN R100
--   capacity_fade_outlier the vehicle's SOH offset against fleet peers of its model, or a fast
--                         fade (dwd_vehicle_soh)
-- Thresholds are dbt vars (detector_*). Baselines are each element's own mean over the
-- detector_baseline_days before the day, so a cell or probe that always sat off its pack
-- (manufacturing spread) is not a drift; a run reads those days back, never the whole history.

with

days as (
    select
        d.*,
        {{ dbt.datediff("cast('2000-01-01' as date)", 'd.date', 'day') }} as day_no  -- noqa: LT05
    from {{ ref('dwd_cell_deviation_daily') }} as d
    where
        {% if start %}d.date >= {{ cells_from }}{% else %}1 = 1{% endif %}
        and d.sample_frames >= {{ var('detector_min_samples', 3) }}
),

baselined as (
    select
        d.*,
        avg(d.mean_deviation) over (
            partition by d.vin, d.element_type, d.element_no order by d.day_no
            range between {{ base_days }} preceding and 1 preceding
        ) as baseline_deviation,
        count(*) over (
            partition by d.vin, d.element_type, d.element_no order by d.day_no
            range between {{ base_days }} preceding and 1 preceding
        ) as baseline_days
    from days as d
),

element_flags as (
    select
        b.vin,
        b.date,
        case when b.element_type = 'cell' then 'cell_voltage_outlier' else 'probe_hot' end as detector,
        b.element_no,
        b.mean_deviation,
        case
            when b.baseline_days >= {{ var('detector_min_baseline_days', 5) }}
                then b.mean_deviation - b.baseline_deviation
        end as drift,
        b.mean_robust_z,
        cast(b.lowest_frames as double) / b.sample_frames as lowest_share,
        b.sample_frames
    from baselined as b
    where
        {% if start %}b.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
        -- a probe that jumped far off its pack that day is a sensor fault, not a hot spot
        and not (
            b.element_type = 'probe'
            and greatest(b.max_deviation, -b.min_deviation) >= {{ var('detector_probe_jump_c', 15) }}
        )
),

cell_flags as (
    select
        f.vin,
        f.date,
        f.detector,
        'cell_voltage_outlier' as warning_type,
        f.element_no,
        case
            when f.mean_deviation <= -{{ var('detector_cell_l3_mv', 80) }}
                or f.drift <= -{{ var('detector_cell_drift_l3_mv', 50) }} then 3
            when (f.mean_deviation <= -{{ var('detector_cell_l2_mv', 25) }} and f.lowest_share >= 0.8)
                or f.drift <= -{{ var('detector_cell_drift_l2_mv', 15) }} then 2
            when f.mean_robust_z <= -{{ var('detector_cell_z_l1', 5) }} and f.lowest_share >= 0.8 then 1
        end as level,
        f.mean_deviation as peak_value,
        'cell ' || cast(f.element_no as {{ str_type() }})
        || ': ' || cast(round(f.mean_deviation, 1) as {{ str_type() }}) || ' mV against its pack at rest'
        || coalesce(', ' || cast(round(f.drift, 1) as {{ str_type() }}) || ' mV against its own baseline', '')
        || ', lowest in ' || cast(round(100 * f.lowest_share) as {{ str_type() }}) || ' % of '
        || cast(f.sample_frames as {{ str_type() }}) || ' samples' as evidence
    from element_flags as f
    where f.detector = 'cell_voltage_outlier'
),

probe_flags as (
    select
        f.vin,
        f.date,
        f.detector,
        'probe_hot' as warning_type,
        f.element_no,
        case
            when f.mean_deviation >= {{ var('detector_probe_l3_c', 8) }}
                or f.drift >= {{ var('detector_probe_drift_l3_c', 6) }} then 3
            when f.mean_deviation >= {{ var('detector_probe_l2_c', 4) }}
                or f.drift >= {{ var('detector_probe_drift_l2_c', 3) }} then 2
            when f.drift >= {{ var('detector_probe_drift_l1_c', 1.5) }} then 1
        end as level,
        f.mean_deviation as peak_value,
        'probe ' || cast(f.element_no as {{ str_type() }})
        || ': +' || cast(round(f.mean_deviation, 1) as {{ str_type() }}) || ' degC against its pack at rest'
        || coalesce(', ' || cast(round(f.drift, 1) as {{ str_type() }}) || ' degC against its own baseline', '')
            as evidence
    from element_flags as f
    where f.detector = 'probe_hot'
),

sensor_flags as (
    select
        d.vin,
        d.date,
        'temperature_sensor_fault' as detector,
        'temperature_sensor_fault' as warning_type,
        d.element_no,
        1 as level,
        cast(d.missing_frames as double) / d.sample_frames as peak_value,
        'probe ' || cast(d.element_no as {{ str_type() }}) || ': '
        || case
            when d.missing_frames >= 0.5 * d.sample_frames
                then cast(d.missing_frames as {{ str_type() }})
                    || ' of '
                    || cast(d.sample_frames as {{ str_type() }})
                    || ' samples missing'
            when d.value_range = 0
                then 'stuck while its pack moved ' || cast(d.pack_median_range as {{ str_type() }}) || ' degC'
            else 'jumped '
                || cast(greatest(d.max_deviation, -d.min_deviation) as {{ str_type() }})
                || ' degC off its pack'
        end as evidence
    from days as d
    where
        d.element_type = 'probe'
        and {% if start %}d.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
        and (
            d.missing_frames >= 0.5 * d.sample_frames
            or (d.value_range = 0 and d.pack_median_range >= {{ var('detector_stuck_pack_range_c', 5) }})
            or greatest(d.max_deviation, -d.min_deviation) >= {{ var('detector_probe_jump_c', 15) }}
        )
),

insulation_days as (
    select
        d.vin,
        d.date,
        {{ dbt.datediff("cast('2000-01-01' as date)", 'd.date', 'day') }} as day_no,  -- noqa: LT05
        -- per volt of the pack's nominal voltage (rated energy / rated capacity)
        ln(greatest(1000 * d.min_insulation_kohm / (1000 * v.rated_energy_kwh / v.rated_capacity_ah), 1))
            as ln_ohm_per_v
    from {{ ref('dwd_vehicle_daily') }} as d
    inner join {{ ref('dws_vehicle') }} as v on d.vin = v.vin
    where
        d.min_insulation_kohm is not null
        and {% if start %}d.date >= {{ ins_from }}{% else %}1 = 1{% endif %}
),

insulation_trend as (
    select
        i.*,
        regr_slope(i.ln_ohm_per_v, i.day_no) over (
            partition by i.vin order by i.day_no
            range between {{ ins_days }} preceding and current row
        ) as slope_per_day,
        count(*) over (
            partition by i.vin order by i.day_no
            range between {{ ins_days }} preceding and current row
        ) as trend_days
    from insulation_days as i
),

insulation_flags as (
    select
        t.vin,
        t.date,
        'insulation_decline' as detector,
        'insulation_decline' as warning_type,
        cast(null as integer) as element_no,
        case
            when t.days_to_floor <= {{ var('detector_insulation_l3_days', 7) }} then 3
            when t.days_to_floor <= {{ var('detector_insulation_l2_days', 30) }} then 2
            else 1
        end as level,
        exp(t.ln_ohm_per_v) as peak_value,
        cast(round(exp(t.ln_ohm_per_v)) as {{ str_type() }}) || ' ohm/V, falling '
        || cast(round(100 * (1 - exp(t.slope_per_day)), 1) as {{ str_type() }}) || ' % a day: 100 ohm/V in '
        || cast(round(t.days_to_floor) as {{ str_type() }}) || ' days' as evidence
    from (
        select
            tr.*,
            case
                when tr.slope_per_day < 0 then greatest((ln(100) - tr.ln_ohm_per_v) / tr.slope_per_day, 0)
            end as days_to_floor
        from insulation_trend as tr
        where tr.trend_days >= {{ var('detector_insulation_min_days', 5) }}
    ) as t
    where
        {% if start %}t.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
        and t.days_to_floor <= {{ var('detector_insulation_l1_days', 90) }}
),

soh_peers as (
    select
        s.vin,
        s.date,
        s.vehicle_offset_pp,
        s.soh_pct,
        v.vehicle_model,
        {{ percentile_cont('s.vehicle_offset_pp', 0.5) }} over (partition by v.vehicle_model, s.date) as peer_median,
        lag(s.soh_pct, {{ var('soh_fast_fade_days') }}) over (partition by s.vin order by s.date) as soh_before
    from {{ ref('dwd_vehicle_soh') }} as s
    inner join {{ ref('dws_vehicle') }} as v on s.vin = v.vin
    where s.observation_count >= {{ var('detector_soh_min_observations', 5) }}
),

soh_flags as (
    select
        p.vin,
        p.date,
        'capacity_fade_outlier' as detector,
        'capacity_fade_outlier' as warning_type,
        cast(null as integer) as element_no,
        case
            when p.soh_before - p.soh_pct >= {{ var('soh_fast_fade_pp') }} then 2
            else 1
        end as level,
        p.vehicle_offset_pp - p.peer_median as peak_value,
        'SOH ' || cast(round(p.soh_pct, 1) as {{ str_type() }}) || ' %, '
        || cast(round(p.vehicle_offset_pp - p.peer_median, 1) as {{ str_type() }}) || ' pp against peers of '
        || p.vehicle_model
        || coalesce(
            ', ' || cast(round(p.soh_before - p.soh_pct, 1) as {{ str_type() }}) || ' pp lost in '
            || cast({{ var('soh_fast_fade_days') }} as {{ str_type() }}) || ' days', ''
        ) as evidence
    from soh_peers as p
    where
        {% if start %}p.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
        and (
            p.vehicle_offset_pp - p.peer_median <= -{{ var('detector_soh_outlier_pp', 5) }}
            or p.soh_before - p.soh_pct >= {{ var('soh_fast_fade_pp') }}
        )
),

flags as (
    select * from cell_flags
    where level is not null
    union all
    select * from probe_flags
    where level is not null
    union all
    select * from sensor_flags
    union all
    select * from insulation_flags
    union all
    select * from soh_flags
)

select
    f.vin,
    f.date,
    f.detector,
    f.warning_type,
    f.element_no,
    cast(f.level as integer) as level,
    f.peak_value,
    f.evidence
from flags as f
