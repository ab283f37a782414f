{%- set window = var('rule_calibration_window_days', 30) -%}
{%- set min_peers = var('rule_routine_min_vehicles', 3) -%}
{%- set budget = var('warning_budget_l2_per_1000', 1.0) -%}
{%- set z = warning_budget_z() -%}

-- The threshold-rule episodes of dwd_rule_episode with a level calibrated against the fleet
-- (issue 14). A level-2 rule is *routine* for a vehicle when, over the other vehicles of its
-- chemistry (a rule's scope: the models of a chemistry share its cells' limits), it fires on
-- more than warning_budget_l2_per_1000 vehicle-days per 1,000 and on at least
-- rule_routine_min_vehicles vehicles (LFP cells at 3.75 V for a few
-- seconds at the end of most full charges). An episode of a routine rule keeps level 2 only when
-- its vehicle departs from those peers (leave-one-vehicle-out: the vehicle never sets its own
-- bar), robust bars median + z x 1.4826 x MAD over the other firing vehicles, z from the budget:
--   repeats more than peers  its firing days over the last rule_calibration_window_days days
--                            above the bar of the peers' most firing days in such a window
--                            (median + z x robust SD on the square root of the counts);
--   getting worse            the episode's peak beyond the bar of the peers' worst peaks and
--                            beyond the vehicle's own worst of the window's earlier days by
--                            the bar's width again (the same vehicle getting worse).
-- Otherwise the episode is kept at level 1 with the reason. Level-1 and level-3 rules are not
-- touched (a level-3 rule means act now, whatever the fleet does); the rule's threshold stays
-- the configured one. Rebuilt whole (a table over the episodes, small).

with

vehicles as (
    {{ vehicle_days_by_scope() }}
),

episodes as (
    select
        e.*,
        v.vehicle_model,
        v.chemistry,
        r.operator,
        {{ dbt.datediff("cast('2000-01-01' as date)", 'e.start_date', 'day') }} as day_no,  -- noqa: LT05
        -- a peak's severity: higher is worse, whatever the rule's direction
        case when r.operator in ('>=', '>') then e.peak_value else -e.peak_value end as severity
    from {{ ref('dwd_rule_episode') }} as e
    inner join vehicles as v on e.vin = v.vin
    inner join {{ rules_relation('warning_rules') }} as r on e.rule_id = r.rule_id
),

fired_days as (
    -- the days a rule fired on a vehicle
    select
        e.vin,
        e.rule_id,
        e.vehicle_model,
        e.chemistry,
        e.day_no,
        max(e.severity) as day_severity
    from episodes as e
    group by e.vin, e.rule_id, e.vehicle_model, e.chemistry, e.day_no
),

window_days as (
    select
        f.*,
        -- the vehicle's worst peak of the rule on the window's earlier days
        max(f.day_severity) over (
            partition by f.vin, f.rule_id order by f.day_no
            range between {{ window - 1 }} preceding and 1 preceding
        ) as prev_max_severity,
        count(*) over (
            partition by f.vin, f.rule_id order by f.day_no
            range between {{ window - 1 }} preceding and current row
        ) as window_firing_days
    from fired_days as f
),

vehicle_rule as (
    -- per vehicle and rule: firing days, the most it fired in a window and its worst peak
    select
        e.vin,
        e.rule_id,
        e.chemistry,
        count(distinct e.day_no) as firing_days,
        max(t.window_firing_days) as max_window_firing_days,
        max(e.severity) as max_severity
    from episodes as e
    inner join window_days as t on e.vin = t.vin and e.rule_id = t.rule_id and e.day_no = t.day_no
    group by e.vin, e.rule_id, e.chemistry
),

peer_pairs as (
    -- every vehicle the rule fired on, against each other vehicle of its chemistry it fired on
    -- (a rule's scope is a chemistry: the models of a chemistry share its cells' limits)
    select
        me.vin,
        me.rule_id,
        p.firing_days as peer_firing_days,
        p.max_window_firing_days as peer_window,
        p.max_severity as peer_severity
    from vehicle_rule as me
    inner join vehicle_rule as p
        on
            me.rule_id = p.rule_id
            and me.chemistry = p.chemistry
            and me.vin != p.vin
),

peer_median as (
    select
        pp.vin,
        pp.rule_id,
        count(*) as peer_vehicles,
        sum(pp.peer_firing_days) as peer_firing_days,
        {{ percentile_cont('sqrt(pp.peer_window)', 0.5) }} as window_sqrt_med,
        {{ percentile_cont('pp.peer_severity', 0.5) }} as severity_med
    from peer_pairs as pp
    group by pp.vin, pp.rule_id
),

peer_bars as (
    select
        m.vin,
        m.rule_id,
        m.peer_vehicles,
        m.peer_firing_days,
        -- on the square root of the counts (variance-stabilising: the root of a Poisson count
        -- has an SD of 0.5 whatever its mean, the floor of the robust SD), squared back
        power(
            m.window_sqrt_med
            + {{ z }} * greatest(
                1.4826 * {{ percentile_cont('abs(sqrt(pp.peer_window) - m.window_sqrt_med)', 0.5) }}, 0.5
            ),
            2
        ) as rate_bar,
        m.severity_med,
        m.severity_med
        + {{ z }} * 1.4826 * {{ percentile_cont('abs(pp.peer_severity - m.severity_med)', 0.5) }} as severity_bar
    from peer_median as m
    inner join peer_pairs as pp on m.vin = pp.vin and m.rule_id = pp.rule_id
    group by m.vin, m.rule_id, m.peer_vehicles, m.peer_firing_days, m.window_sqrt_med, m.severity_med
),

scope_days as (
    select
        v.chemistry,
        sum(v.vehicle_days) as vehicle_days
    from vehicles as v
    group by v.chemistry
),

judged as (
    select
        e.*,
        t.window_firing_days,
        t.prev_max_severity,
        coalesce(b.peer_vehicles, 0) as peer_vehicles,
        -- the peers' firing rate: vehicle-days of the others the rule fired on, per 1,000
        1000.0 * coalesce(b.peer_firing_days, 0)
        / nullif(sd.vehicle_days - v.vehicle_days, 0) as peer_firing_per_1000,
        b.rate_bar,
        b.severity_med,
        b.severity_bar
    from episodes as e
    inner join vehicles as v on e.vin = v.vin
    inner join scope_days as sd on e.chemistry = sd.chemistry
    inner join window_days as t on e.vin = t.vin and e.rule_id = t.rule_id and e.day_no = t.day_no
    left join peer_bars as b on e.vin = b.vin and e.rule_id = b.rule_id
),

calibrated as (
    select
        j.*,
        j.level = 2
        and j.peer_vehicles >= {{ min_peers }}
        and coalesce(j.peer_firing_per_1000, 0) > {{ budget }} as is_routine,
        coalesce(j.window_firing_days > j.rate_bar, false) as repeats_more,
        -- beyond the peers' worst peaks and, by as much again, beyond its own earlier worst:
        -- the same vehicle getting worse, not one whose weak cell always peaks at the top
        coalesce(
            j.severity > j.severity_bar
            and j.severity > j.prev_max_severity + (j.severity_bar - j.severity_med),
            false
        ) as is_worse
    from judged as j
)

select
    c.vin,
    c.rule_id,
    c.warning_type,
    c.metric,
    c.level as configured_level,
    cast(
        case when c.is_routine and not c.repeats_more and not c.is_worse then 1 else c.level end
        as integer
    ) as level,
    c.start_time,
    c.start_date,
    c.end_time,
    c.duration_s,
    c.frame_count,
    c.peak_value,
    c.threshold,
    c.element_no,
    c.vehicle_model,
    c.chemistry,
    c.is_routine,
    c.peer_vehicles,
    c.peer_firing_per_1000,
    c.window_firing_days,
    c.rate_bar as peer_firing_days_bar,
    case
        when c.operator in ('>=', '>') then c.severity_bar
        else -c.severity_bar
    end as peer_peak_bar,
    case
        when not c.is_routine then null
        when c.repeats_more
            then 'routine on ' || cast(c.peer_vehicles as {{ str_type() }}) || ' other vehicles of '
                || c.chemistry || ', but fired on ' || cast(c.window_firing_days as {{ str_type() }})
                || ' days of {{ window }} (peers: up to ' || cast(round(c.rate_bar, 1) as {{ str_type() }})
                || '): level ' || cast(c.level as {{ str_type() }})
        when c.is_worse
            then 'routine on ' || cast(c.peer_vehicles as {{ str_type() }}) || ' other vehicles of '
                || c.chemistry || ', but its peak is beyond the peers'' bar and its own earlier worst: level '
                || cast(c.level as {{ str_type() }})
        else 'routine on ' || cast(c.peer_vehicles as {{ str_type() }}) || ' other vehicles of '
            || c.chemistry || ' (' || cast(round(c.peer_firing_per_1000, 1) as {{ str_type() }})
            || ' per 1000 vehicle-days), within its peers: kept at level 1'
    end as calibration_reason,
    c.rules_version
from calibrated as c
