{%- set min_co = var('association_min_cooccurrences', 5) -%}
{%- set min_veh = var('association_min_vehicles', 2) -%}
{%- set min_z = var('association_min_z', 3.29) -%}
{%- set window_h = var('association_precedence_window_h', 168) -%}

-- How faults relate: association rules A -> B between alarm and warning items, over two kinds
-- of transactions, and how often B follows A.
--   items         every GB/T 32960 alarm bit of an alarm episode (dwd_alarm_event:
--                 'alarm:<name>') and every warning type (ads_battery_warning: 'warning:<type>')
--   transactions  vehicle-days ('vehicle_day'), and activities ('activity': each charge
--                 segment and trip, the items whose episode starts inside it) - an activity
--                 does not mix a taxi's ten sessions into one basket, so alarms that are
--                 independent per session stay independent
--   measures      support = P(A and B), confidence = P(B | A), pooled_lift = confidence / P(B);
--                 lift = n_AB / E with E the co-occurrences expected if A and B were independent
--                 within each usage type (sum of n_A,s x n_B,s / N_s), z = (n_AB - E) / sqrt(E),
--                 the co-occurrences above chance in Poisson standard deviations
--   precedence    of A's episodes, the share followed by a B episode of the same vehicle
--                 within association_precedence_window_h hours, and the lag (median, P90)
-- Only rules that mean something are kept: n_AB >= association_min_cooccurrences, on at least
-- association_min_vehicles vehicles, lift > 1, z >= association_min_z (3.29: p < 0.0005).

with

item_events as (
    select
        a.vin,
        'alarm:' || a.alarm_name as item,
        a.start_time
    from {{ ref('dwd_alarm_event') }} as a
    union all
    select
        w.vin,
        'warning:' || w.warning_type as item,
        w.start_time
    from {{ ref('ads_battery_warning') }} as w
),

activities as (
    select
        s.vin,
        s.start_time,
        s.end_time
    from {{ ref('dwd_charge_segment') }} as s
    union all
    select
        t.vin,
        t.start_time,
        t.end_time
    from {{ ref('dwd_drive_trip') }} as t
),

baskets as (
    select distinct
        'vehicle_day' as transaction_type,
        e.vin || '|' || cast(cast(e.start_time as date) as {{ str_type() }}) as transaction_id,
        e.vin,
        e.item
    from item_events as e
    union all
    select distinct
        'activity' as transaction_type,
        a.vin || '|' || cast(a.start_time as {{ str_type() }}) as transaction_id,
        e.vin,
        e.item
    from item_events as e
    inner join activities as a
        on e.vin = a.vin and e.start_time >= a.start_time and e.start_time <= a.end_time
),

vehicle_totals as (
    -- transactions per stratum (the vehicles of one usage type): the independence baseline is
    -- taken within each stratum
    select
        'vehicle_day' as transaction_type,
        v.usage_type as stratum,
        count(*) as n_transactions
    from (
        select distinct
            d.vin,
            d.date
        from {{ ref('dwd_vehicle_daily') }} as d
    ) as vd
    inner join {{ ref('dws_vehicle') }} as v on vd.vin = v.vin
    group by v.usage_type
    union all
    select
        'activity' as transaction_type,
        v.usage_type as stratum,
        count(*) as n_transactions
    from activities as a
    inner join {{ ref('dws_vehicle') }} as v on a.vin = v.vin
    group by v.usage_type
),

totals as (
    select
        vt.transaction_type,
        sum(vt.n_transactions) as n_transactions
    from vehicle_totals as vt
    group by vt.transaction_type
),

vehicle_items as (
    select
        b.transaction_type,
        v.usage_type as stratum,
        b.item,
        count(*) as n_item
    from baskets as b
    inner join {{ ref('dws_vehicle') }} as v on b.vin = v.vin
    group by b.transaction_type, v.usage_type, b.item
),

item_counts as (
    select
        vi.transaction_type,
        vi.item,
        sum(vi.n_item) as n_item
    from vehicle_items as vi
    group by vi.transaction_type, vi.item
),

expected as (
    -- co-occurrences expected if A and B were independent within every usage type:
    -- sum over strata of n_A,s x n_B,s / N_s. A pooled expectation would call two alarms
    -- related just because both are more frequent on busy vehicles (a taxi's day holds ten
    -- sessions, a private car's two); a stratum per vehicle would hide the relations that
    -- are what one vehicle's fault does (a failing probe and the temperature alarms it sets)
    select
        x.transaction_type,
        x.item as antecedent,
        y.item as consequent,
        -- fixed point (12 decimals): a float sum in whatever order the strata come differs in
        -- its last bits between a full build and a rerun
        {{ exact_sum('cast(x.n_item as double) * y.n_item / vt.n_transactions', 12) }} as e_both
    from vehicle_items as x
    inner join vehicle_items as y
        on x.transaction_type = y.transaction_type and x.stratum = y.stratum and x.item <> y.item
    inner join vehicle_totals as vt on x.transaction_type = vt.transaction_type and x.stratum = vt.stratum
    group by x.transaction_type, x.item, y.item
),

pairs as (
    select
        x.transaction_type,
        x.item as antecedent,
        y.item as consequent,
        count(*) as n_both,
        count(distinct x.vin) as vehicles
    from baskets as x
    inner join baskets as y
        on
            x.transaction_type = y.transaction_type
            and x.transaction_id = y.transaction_id
            and x.item <> y.item
    group by x.transaction_type, x.item, y.item
),

measured as (
    select
        p.transaction_type,
        p.antecedent,
        p.consequent,
        t.n_transactions,
        ca.n_item as n_antecedent,
        cb.n_item as n_consequent,
        p.n_both,
        p.vehicles,
        cast(p.n_both as double) / t.n_transactions as support,  -- noqa: RF04
        cast(p.n_both as double) / ca.n_item as confidence,  -- noqa: RF04
        (cast(p.n_both as double) / ca.n_item) / (cast(cb.n_item as double) / t.n_transactions) as pooled_lift,
        ex.e_both as expected_both,
        p.n_both / ex.e_both as lift,
        (p.n_both - ex.e_both) / sqrt(ex.e_both) as z_score
    from pairs as p
    inner join totals as t on p.transaction_type = t.transaction_type
    inner join item_counts as ca on p.transaction_type = ca.transaction_type and p.antecedent = ca.item
    inner join item_counts as cb on p.transaction_type = cb.transaction_type and p.consequent = cb.item
    inner join expected as ex
        on p.transaction_type = ex.transaction_type and p.antecedent = ex.antecedent and p.consequent = ex.consequent
),

kept as (
    select distinct
        m.antecedent,
        m.consequent
    from measured as m
    where
        m.n_both >= {{ min_co }}
        and m.vehicles >= {{ min_veh }}
        and m.lift > 1
        and m.z_score >= {{ min_z }}
),

followed as (
    -- for every episode of A of a kept rule, the first episode of B of the same vehicle after
    -- it, within the window (only kept pairs: the self-join of all episodes grows with the
    -- square of a chatty alarm's count)
    select
        a.item as antecedent,
        b.item as consequent,
        a.vin,
        a.start_time,
        min({{ epoch_seconds('b.start_time') }} - {{ epoch_seconds('a.start_time') }}) / 3600.0 as lag_h
    from item_events as a
    inner join kept as k on a.item = k.antecedent
    inner join item_events as b
        on
            a.vin = b.vin
            and k.consequent = b.item
            and a.start_time < b.start_time
            and b.start_time <= {{ dbt.dateadd('hour', window_h, 'a.start_time') }}
    group by a.item, b.item, a.vin, a.start_time
),

episodes as (
    select
        e.item,
        count(*) as n_episodes
    from item_events as e
    group by e.item
),

precedence as (
    select
        f.antecedent,
        f.consequent,
        count(*) as n_followed,
        {{ percentile_cont('f.lag_h', 0.5) }} as lag_median_h,
        {{ percentile_cont('f.lag_h', 0.9) }} as lag_p90_h
    from followed as f
    group by f.antecedent, f.consequent
)

select
    m.transaction_type,
    m.antecedent,
    m.consequent,
    m.n_transactions,
    m.n_antecedent,
    m.n_consequent,
    m.n_both,
    m.vehicles,
    m.support,
    m.confidence,
    m.pooled_lift,
    m.expected_both,
    m.lift,
    m.z_score,
    ep.n_episodes as antecedent_episodes,
    coalesce(pr.n_followed, 0) as followed_episodes,
    cast(coalesce(pr.n_followed, 0) as double) / ep.n_episodes as followed_share,
    pr.lag_median_h,
    pr.lag_p90_h
from measured as m
inner join episodes as ep on m.antecedent = ep.item
left join precedence as pr on m.antecedent = pr.antecedent and m.consequent = pr.consequent
where
    m.n_both >= {{ min_co }}
    and m.vehicles >= {{ min_veh }}
    and m.lift > 1
    and m.z_score >= {{ min_z }}
