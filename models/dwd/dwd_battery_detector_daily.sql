{{
    config(
        pre_hook="{{ lifetime_delete_from() }}",
        **day_incremental('date', deletes_first=true)
    )
}}

{%- set start = lifetime_start_date() -%}
{%- set base_days = var('detector_baseline_days', 30) -%}
{%- set ins_days = var('detector_insulation_days', 14) -%}
{%- set persist = var('detector_cell_persistence_days', 3) -%}
{%- set persist_probe = var('detector_probe_persistence_days', 2) -%}
{%- set persist_window = var('detector_persistence_window_days', 7) -%}
{%- set trend_days = var('detector_trend_days', 5) -%}
{%- set z = warning_budget_z() -%}
{#- the first day each input is read from: the baseline, trend and persistence windows before the
    first rebuilt day (a persisted day looks back persist_window days, each with its own
    baseline) -#}
{%- set read_back = base_days + persist_window + trend_days -%}
{%- set cells_from = dbt.dateadd('day', -read_back, "cast('" ~ start ~ "' as date)") if start else none -%}
{%- set ins_from = dbt.dateadd('day', -ins_days, "cast('" ~ start ~ "' as date)") if start else none -%}

-- Statistical warning detectors, one row per vehicle, day and detector that fired (level 1..3):
--   cell_voltage_outlier  a cell below its pack at rest, repeatedly the lowest, or drifting down
--                         against its own baseline (micro-short / self-discharge, a weak cell)
--   probe_hot             a probe running hot against its pack at rest, against its own
--                         baseline or rising day after day (local heating: a thermal-runaway
--                         precursor)
--   temperature_sensor_fault  a probe missing, stuck while its pack's temperature moved, or
--                         jumping far from its pack
--   insulation_decline    the trend of the day's lowest insulation (ohm/V) heading for the
--                         100 ohm/V floor of UN R100
--   capacity_fade_outlier the vehicle's SOH offset against fleet peers of its model, or a fast
--                         fade (dwd_vehicle_soh)
-- Baselines are each element's own mean over the detector_baseline_days before the day, so a
-- cell or probe that always sat off its pack (manufacturing spread, a probe offset) is not a
-- drift; a run reads those days back, never the whole history.
-- Self-calibrating level 2 (issue 14): the level-2 bars of the drift and trend statistics are
-- learnt from the fleet itself, per vehicle model and chemistry: median + z x 1.4826 x MAD of
-- the per-vehicle-day statistic (the worst element of the vehicle that day) over the days the
-- run reads, z from the false-alarm budget warning_budget_l2_per_1000 (macro
-- warning_budget_z), never below the configured detector_* value (the bar only rises on a noisy
-- fleet). A departure reaches level 2 only when it repeats: departure days of the element
-- over the last detector_persistence_window_days days sum to detector_cell_persistence_days
-- (3) for a cell, detector_probe_persistence_days (2) for a probe (a day beyond twice the bar
-- counts two); a cell or probe that merely sits off its pack without drifting
-- or rising stays a level-1 notice saying so.

with

days as (
    select
        d.*,
        v.vehicle_model,
        v.chemistry,
        {{ dbt.datediff("cast('2000-01-01' as date)", 'd.date', 'day') }} as day_no  -- noqa: LT05
    from {{ ref('dwd_cell_deviation_daily') }} as d
    inner join {{ ref('dws_vehicle') }} as v on d.vin = v.vin
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
        ) as baseline_days,
        -- the element's trend over the last detector_trend_days days (per day)
        regr_slope(d.mean_deviation, d.day_no) over (
            partition by d.vin, d.element_type, d.element_no order by d.day_no
            range between {{ trend_days - 1 }} preceding and current row
        ) as trend_per_day,
        count(*) over (
            partition by d.vin, d.element_type, d.element_no order by d.day_no
            range between {{ trend_days - 1 }} preceding and current row
        ) as trend_days
    from days as d
),

stats as (
    select
        b.*,
        case
            when b.baseline_days >= {{ var('detector_min_baseline_days', 5) }}
                then b.mean_deviation - b.baseline_deviation
        end as drift,
        case
            when b.trend_days >= {{ var('detector_min_trend_days', 4) }} then b.trend_per_day
        end as trend
    from baselined as b
    -- a probe that jumped far off its pack that day is a sensor fault, not a hot spot
    where
        b.element_type = 'cell'
        or greatest(b.max_deviation, -b.min_deviation) < {{ var('detector_probe_jump_c', 15) }}
),

vehicle_day_stats as (
    -- the worst element of each vehicle-day: the statistic the fleet's bars are learnt from
    select
        s.vehicle_model,
        s.chemistry,
        s.vin,
        s.date,
        -min(case when s.element_type = 'cell' then s.drift end) as cell_drop,
        max(case when s.element_type = 'probe' then s.drift end) as probe_rise,
        max(case when s.element_type = 'probe' then s.trend end) as probe_trend
    from stats as s
    group by s.vehicle_model, s.chemistry, s.vin, s.date
),

fleet_median as (
    select
        v.vehicle_model,
        v.chemistry,
        {{ percentile_cont('v.cell_drop', 0.5) }} as cell_drop_med,
        {{ percentile_cont('v.probe_rise', 0.5) }} as probe_rise_med,
        {{ percentile_cont('v.probe_trend', 0.5) }} as probe_trend_med
    from vehicle_day_stats as v
    group by v.vehicle_model, v.chemistry
),

fleet_bars as (
    -- level-2 bars: median + z x 1.4826 x MAD of the fleet's vehicle-days, at least the var
    select
        m.vehicle_model,
        m.chemistry,
        {{ robust_bar('m.cell_drop_med', 'v.cell_drop', z, var('detector_cell_drift_l2_mv', 15)) }} as cell_drift_bar,
        {{ robust_bar('m.probe_rise_med', 'v.probe_rise', z, var('detector_probe_drift_l2_c', 3)) }} as probe_drift_bar,
        {{ robust_bar('m.probe_trend_med', 'v.probe_trend', z,
                      var('detector_probe_trend_l2_c_per_day', 0.3)) }} as probe_trend_bar
    from fleet_median as m
    inner join vehicle_day_stats as v
        on m.vehicle_model = v.vehicle_model and m.chemistry = v.chemistry
    group by m.vehicle_model, m.chemistry, m.cell_drop_med, m.probe_rise_med, m.probe_trend_med
),

departures as (
    -- a departure day scores 1 beyond the bar, 2 beyond twice the bar (the same element
    -- getting worse counts double)
    select
        s.*,
        fb.cell_drift_bar,
        fb.probe_drift_bar,
        fb.probe_trend_bar,
        case
            -- a cell losing charge ends up its pack's lowest at rest: one that drifted from
            -- above the pack back to its middle is no departure
            when
                s.element_type = 'cell'
                and s.lowest_frames < {{ var('detector_cell_min_lowest_share', 0.5) }} * s.sample_frames
                then 0
            when s.element_type = 'cell' and s.drift <= -2 * fb.cell_drift_bar then 2
            when s.element_type = 'cell' and s.drift <= -fb.cell_drift_bar then 1
            when s.element_type = 'cell' then 0
            -- probes: a rising probe counts once it also left its own baseline (or has none yet)
            when s.drift >= 2 * fb.probe_drift_bar then 2
            when coalesce(s.drift, 1e9) < {{ var('detector_probe_drift_l1_c', 1.5) }} then 0
            when s.trend >= 2 * fb.probe_trend_bar then 2
            when s.drift >= fb.probe_drift_bar or s.trend >= fb.probe_trend_bar then 1
            else 0
        end as departure_score
    from stats as s
    inner join fleet_bars as fb on s.vehicle_model = fb.vehicle_model and s.chemistry = fb.chemistry
),

persisted as (
    select
        dp.*,
        dp.departure_score > 0 as is_departure,
        -- departures of the element over the last detector_persistence_window_days days
        sum(dp.departure_score) over (
            partition by dp.vin, dp.element_type, dp.element_no order by dp.day_no
            range between {{ persist_window - 1 }} preceding and current row
        ) as departure_days
    from departures as dp
),

element_flags as (
    select
        p.vin,
        p.date,
        case when p.element_type = 'cell' then 'cell_voltage_outlier' else 'probe_hot' end as detector,
        p.element_no,
        p.mean_deviation,
        p.drift,
        p.trend,
        p.mean_robust_z,
        cast(p.lowest_frames as double) / p.sample_frames as lowest_share,
        p.sample_frames,
        p.is_departure,
        p.departure_days >= case when p.element_type = 'cell' then {{ persist }} else {{ persist_probe }} end
            as is_persistent,
        p.cell_drift_bar,
        p.probe_drift_bar,
        p.probe_trend_bar
    from persisted as p
    where
        {% if start %}p.date >= cast('{{ start }}' as date){% else %}1 = 1{% endif %}
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
            when f.is_departure and f.is_persistent then 2
            when f.is_departure then 1
            when f.mean_deviation <= -{{ var('detector_cell_l2_mv', 25) }} and f.lowest_share >= 0.8 then 1
            when f.mean_robust_z <= -{{ var('detector_cell_z_l1', 5) }} and f.lowest_share >= 0.8 then 1
        end as level,
        f.mean_deviation as peak_value,
        'cell ' || cast(f.element_no as {{ str_type() }})
        || ': ' || cast(round(f.mean_deviation, 1) as {{ str_type() }}) || ' mV against its pack at rest'
        || coalesce(', ' || cast(round(f.drift, 1) as {{ str_type() }}) || ' mV against its own baseline', '')
        || ', lowest in ' || cast(round(100 * f.lowest_share) as {{ str_type() }}) || ' % of '
        || cast(f.sample_frames as {{ str_type() }}) || ' samples'
        || case
            when f.is_departure and f.is_persistent
                then '; beyond the fleet bar of -' || cast(round(f.cell_drift_bar, 1) as {{ str_type() }})
                    || ' mV on {{ persist }} days of {{ persist_window }}'
            when f.is_departure
                then '; beyond the fleet bar of -' || cast(round(f.cell_drift_bar, 1) as {{ str_type() }})
                    || ' mV, not yet on {{ persist }} days of {{ persist_window }}: level 1'
            when f.mean_deviation <= -{{ var('detector_cell_l2_mv', 25) }}
                then '; sits below its pack without drifting beyond the fleet bar: level 1'
            else ''
        end as evidence
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
            when f.is_departure and f.is_persistent then 2
            -- a rising probe without a baseline yet is no notice until it repeats
            when f.is_departure and f.drift is not null then 1
            when f.mean_deviation >= {{ var('detector_probe_l2_c', 4) }}
                or f.drift >= {{ var('detector_probe_drift_l1_c', 1.5) }} then 1
        end as level,
        f.mean_deviation as peak_value,
        'probe ' || cast(f.element_no as {{ str_type() }})
        || ': +' || cast(round(f.mean_deviation, 1) as {{ str_type() }}) || ' degC against its pack at rest'
        || coalesce(', ' || cast(round(f.drift, 1) as {{ str_type() }}) || ' degC against its own baseline', '')
        || coalesce(', rising ' || cast(round(f.trend, 2) as {{ str_type() }}) || ' degC a day', '')
        || case
            when f.is_departure and f.is_persistent
                then '; beyond the fleet bars (+' || cast(round(f.probe_drift_bar, 1) as {{ str_type() }})
                    || ' degC, ' || cast(round(f.probe_trend_bar, 2) as {{ str_type() }})
                    || ' degC a day) on {{ persist_probe }} days of {{ persist_window }}'
            when f.is_departure
                then '; beyond the fleet bars, not yet on {{ persist_probe }} days of {{ persist_window }}: level 1'
            when f.mean_deviation >= {{ var('detector_probe_l2_c', 4) }}
                then '; sits above its pack without drifting or rising (a probe offset?): level 1'
            else ''
        end as evidence
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
        lag(s.soh_pct, {{ var('soh_fast_fade_days') }}) over (partition by s.vin order by s.date) as soh_before,
        -- the standard error of the 30-day loss, from the two days' 90 % intervals
        sqrt(
            power((s.soh_upper_pct - s.soh_lower_pct) / (2 * 1.645), 2)
            + power(lag((s.soh_upper_pct - s.soh_lower_pct) / (2 * 1.645), {{ var('soh_fast_fade_days') }}) over (
                partition by s.vin order by s.date
            ), 2)
        ) as loss_se
    from {{ ref('dwd_vehicle_soh') }} as s
    inner join {{ ref('dws_vehicle') }} as v on s.vin = v.vin
    where s.observation_count >= {{ var('detector_soh_min_observations', 5) }}
),

soh_fade_bar as (
    -- the 30-day SOH loss a vehicle-day of the model sees in this fleet: the fast-fade bar is
    -- learnt like the detectors' (median + z x 1.4826 x MAD), at least soh_fast_fade_pp
    select
        m.vehicle_model,
        greatest(
            {{ var('soh_fast_fade_pp') }},
            coalesce(
                m.loss_med
                + {{ z }} * 1.4826 * {{ percentile_cont('abs(p.soh_before - p.soh_pct - m.loss_med)', 0.5) }},
                0
            )
        ) as fade_bar
    from (
        select
            pp.vehicle_model,
            {{ percentile_cont('pp.soh_before - pp.soh_pct', 0.5) }} as loss_med
        from soh_peers as pp
        group by pp.vehicle_model
    ) as m
    inner join soh_peers as p on m.vehicle_model = p.vehicle_model
    group by m.vehicle_model, m.loss_med
),

soh_flags as (
    select
        p.vin,
        p.date,
        'capacity_fade_outlier' as detector,
        'capacity_fade_outlier' as warning_type,
        cast(null as integer) as element_no,
        -- a fast fade beyond the fleet's bar and beyond the estimate's own uncertainty at the
        -- budget's z (a noisy SOH estimate does not make a fade)
        case
            when p.soh_before - p.soh_pct >= greatest(b.fade_bar, {{ z }} * coalesce(p.loss_se, 0)) then 2
            else 1
        end as level,
        p.vehicle_offset_pp - p.peer_median as peak_value,
        'SOH ' || cast(round(p.soh_pct, 1) as {{ str_type() }}) || ' %, '
        || cast(round(p.vehicle_offset_pp - p.peer_median, 1) as {{ str_type() }}) || ' pp against peers of '
        || p.vehicle_model
        || coalesce(
            ', ' || cast(round(p.soh_before - p.soh_pct, 1) as {{ str_type() }}) || ' pp lost in '
            || cast({{ var('soh_fast_fade_days') }} as {{ str_type() }}) || ' days (bar '
            || cast(round(greatest(b.fade_bar, {{ z }} * coalesce(p.loss_se, 0)), 1) as {{ str_type() }})
            || ' pp: the fleet''s and the estimate''s uncertainty)', ''
        ) as evidence
    from soh_peers as p
    inner join soh_fade_bar as b on p.vehicle_model = b.vehicle_model
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
    f.evidence,
    -- the rules version (content hash of the rule tables, detector settings included) of the run
    -- that judged the day
    cast('{{ rules_version() }}' as {{ str_type() }}) as rules_version
from flags as f
