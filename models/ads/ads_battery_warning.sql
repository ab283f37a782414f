{%- set gap_h = var('warning_merge_gap_h', 24) -%}

-- Battery warnings for operators: one row per warning episode of a vehicle and cause. Threshold
-- rule episodes (dwd_rule_episode_calibrated: a rule routine on the vehicle's peers reaches
-- level 2 only when the vehicle departs from them) and statistical detector days (dwd_battery_detector_daily)
-- of one warning_type merge into one warning while they follow each other within
-- warning_merge_gap_h hours, instead of a flood of frames. The level is the highest reached
-- (1 notice, 2 inspect soon, 3 act now); first_level2_time / first_level3_time say when it got
-- there. A detector works on whole days, so its evidence counts from the end of the day that
-- shows it (when the daily run can know it).

with

episodes as (
    select
        r.vin,
        r.warning_type,
        r.level,
        r.start_time,
        r.end_time,
        r.peak_value,
        'rule:' || r.rule_id as detector,
        r.rule_id || ' ' || r.metric || ' peak ' || cast(round(r.peak_value, 3) as {{ str_type() }})
        || ' against ' || cast(r.threshold as {{ str_type() }})
        || coalesce(
            case when r.metric like '%temp%' then ', probe ' else ', cell ' end
            || cast(r.element_no as {{ str_type() }}),
            ''
        )
        || ', ' || cast(r.duration_s as {{ str_type() }}) || ' s'
        || coalesce('; ' || r.calibration_reason, '') as evidence,
        r.rules_version
    from {{ ref('dwd_rule_episode_calibrated') }} as r
    union all
    select
        d.vin,
        d.warning_type,
        d.level,
        {{ dbt.dateadd('day', 1, 'cast(d.date as timestamp)') }} as start_time,
        {{ dbt.dateadd('day', 1, 'cast(d.date as timestamp)') }} as end_time,
        d.peak_value,
        d.detector,
        d.evidence,
        d.rules_version
    from {{ ref('dwd_battery_detector_daily') }} as d
),

ordered as (
    select
        e.*,
        max(e.end_time) over (
            partition by e.vin, e.warning_type order by e.start_time, e.end_time
            rows between unbounded preceding and 1 preceding
        ) as prev_end_time
    from episodes as e
),

numbered as (
    select
        o.*,
        sum(
            case
                when o.prev_end_time is null
                    or o.start_time > {{ dbt.dateadd('hour', gap_h, 'o.prev_end_time') }} then 1
                else 0
            end
        ) over (
            partition by o.vin, o.warning_type order by o.start_time, o.end_time
            rows between unbounded preceding and current row
        ) as warning_no
    from ordered as o
),

spoken as (
    -- the worst episode speaks for the warning: the highest level, then the latest; ties (two
    -- probes' episodes of the same day) broken on value, detector and evidence, so that a rerun
    -- picks the same one
    select
        n.*,
        row_number() over (
            partition by n.vin, n.warning_type, n.warning_no
            order by n.level desc, n.start_time desc, n.peak_value desc, n.detector asc, n.evidence asc
        ) as speaker_rank
    from numbered as n
),

warnings as (
    select
        n.vin,
        n.warning_type,
        n.warning_no,
        max(n.level) as level,
        min(n.start_time) as start_time,
        max(n.end_time) as end_time,
        min(case when n.level >= 2 then n.start_time end) as first_level2_time,
        min(case when n.level >= 3 then n.start_time end) as first_level3_time,
        -- the episode that speaks for the warning (spoken): its detector, value and evidence
        {{ min_by('n.peak_value', 'n.speaker_rank') }} as peak_value,
        {{ min_by('n.detector', 'n.speaker_rank') }} as detector,
        {{ min_by('n.evidence', 'n.speaker_rank') }} as evidence,
        {{ min_by('n.rules_version', 'n.speaker_rank') }} as rules_version,
        count(*) as episode_count
    from spoken as n
    group by n.vin, n.warning_type, n.warning_no
)

select
    {{ dbt.hash("w.vin || '|' || w.warning_type || '|' || cast(w.start_time as " ~ str_type() ~ ")") }} as warning_id,
    w.vin,
    w.warning_type,
    cast(w.level as integer) as level,
    w.start_time,
    w.end_time,
    w.peak_value,
    w.detector,
    w.evidence,
    w.first_level2_time,
    w.first_level3_time,
    w.episode_count,
    w.rules_version
from warnings as w
