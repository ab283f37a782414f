{{
    config(
        pre_hook="{{ dwd_delete_rebuilt_days('start_date') }}",
        **day_incremental('start_date', deletes_first=true)
    )
}}

{%- set gap_s = dwd_segment_gap_s() -%}
{%- set rules = get_warning_rules() -%}
{%- set metrics = warning_rule_metrics() -%}
{#- two matching frames further apart than this are two episodes (one report period missed) -#}
{%- set break_s = 1.5 * var('report_period_s', 10) -%}

-- One row per episode of a threshold rule of the seed warning_rules: a run of frames of one
-- vehicle meeting the rule's condition with no step longer than 1.5 report periods, kept when
-- it lasts min_duration_s. Rules are config: the seed names a frame metric (scalar columns
-- only, never the cell arrays), an operator, a threshold, a duration, a level and a chemistry
-- or model scope. An episode belongs to the day it starts (rebuilt like a trip,
-- macros/dwd_window.sql).

with

frames as (
    select
        f.vin,
        f.collect_time,
        {{ epoch_seconds('f.collect_time') }} as t_s,
        f.max_temp_c,
        f.min_temp_c,
        f.max_temp_c - f.min_temp_c as temp_diff_c,
        f.max_cell_voltage_v,
        f.min_cell_voltage_v,
        f.max_cell_voltage_v - f.min_cell_voltage_v as cell_voltage_spread_v,
        1000 * f.insulation_resistance_kohm / nullif(f.total_voltage_v, 0) as insulation_ohm_per_v,
        f.total_voltage_v,
        f.total_current_a,
        f.soc_pct,
        f.max_temp_probe_no,
        f.min_temp_probe_no,
        f.max_volt_cell_no,
        f.min_volt_cell_no
    from {{ ref('dws_realtime_frame') }} as f
    where {{ dwd_read_filter('f.collect_date', 'f.collect_time') }}
),

metrics as (
    select
        fr.*,
        v.chemistry,
        v.vehicle_model,
        case
            when fr.t_s - lag(fr.t_s) over (partition by fr.vin order by fr.collect_time) <= {{ gap_s }}
                then abs(fr.soc_pct - lag(fr.soc_pct) over (partition by fr.vin order by fr.collect_time))
        end as soc_jump_pct,
        -- rise of the hottest probe over about half a minute: 3 frames back at the 10 s period,
        -- 30 at the 1 s period of the level-3 alarm windows (the 1 degC steps of the protocol
        -- make a frame-to-frame rate useless at 1 s); lags, not a time-range window, so the
        -- frames are sorted once
        case
            when fr.t_s - lag(fr.t_s, 30) over (partition by fr.vin order by fr.collect_time) between 20 and 90
                then (fr.max_temp_c - lag(fr.max_temp_c, 30) over (partition by fr.vin order by fr.collect_time))
                    / (fr.t_s - lag(fr.t_s, 30) over (partition by fr.vin order by fr.collect_time))
            when fr.t_s - lag(fr.t_s, 3) over (partition by fr.vin order by fr.collect_time) between 20 and 90
                then (fr.max_temp_c - lag(fr.max_temp_c, 3) over (partition by fr.vin order by fr.collect_time))
                    / (fr.t_s - lag(fr.t_s, 3) over (partition by fr.vin order by fr.collect_time))
        end as temp_rise_c_per_s
    from frames as fr
    inner join {{ ref('dws_vehicle') }} as v on fr.vin = v.vin
),

matched as (
    {%- if rules | length == 0 %}
        select
            cast(null as {{ str_type() }}) as rule_id,
            m.vin,
            m.collect_time,
            m.t_s,
            cast(null as double) as metric_value,
            cast(null as bigint) as element_no
        from metrics as m
        where 1 = 0
    {%- endif %}
    {%- for r in rules %}
    select
        '{{ r.rule_id }}' as rule_id,
        m.vin,
        m.collect_time,
        m.t_s,
        cast(m.{{ r.metric }} as double) as metric_value,
        cast({{ 'm.' ~ metrics[r.metric] if metrics[r.metric] else 'null' }} as bigint) as element_no
    from metrics as m
    where
        m.{{ r.metric }} {{ r.operator }} {{ r.threshold }}
        {%- if r.chemistry not in (none, '', 'ALL') %}
        and m.chemistry = '{{ r.chemistry }}'
        {%- endif %}
        {%- if r.vehicle_model not in (none, '', 'ALL') %}
        and m.vehicle_model = '{{ r.vehicle_model }}'
        {%- endif %}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

stepped as (
    select
        mt.*,
        mt.t_s - lag(mt.t_s) over (partition by mt.vin, mt.rule_id order by mt.collect_time) as dt_prev_s
    from matched as mt
),

numbered as (
    select
        mt.*,
        sum(case when mt.dt_prev_s <= {{ break_s }} then 0 else 1 end) over (
            partition by mt.vin, mt.rule_id order by mt.collect_time
            rows between unbounded preceding and current row
        ) as episode_no
    from stepped as mt
),

episodes as (
    select
        n.vin,
        n.rule_id,
        n.episode_no,
        min(n.collect_time) as start_time,
        max(n.collect_time) as end_time,
        max(n.t_s) - min(n.t_s) as duration_s,
        count(*) as frame_count,
        max(n.metric_value) as max_value,
        min(n.metric_value) as min_value,
        {{ max_by('n.element_no', 'n.metric_value') }} as element_at_max,
        {{ min_by('n.element_no', 'n.metric_value') }} as element_at_min
    from numbered as n
    group by n.vin, n.rule_id, n.episode_no
)

select
    e.vin,
    e.rule_id,
    r.warning_type,
    r.metric,
    cast(r.level as integer) as level,
    e.start_time,
    cast(e.start_time as date) as start_date,
    e.end_time,
    e.duration_s,
    e.frame_count,
    -- the worst value: the highest for an upper limit, the lowest for a lower one
    case when r.operator in ('>=', '>') then e.max_value else e.min_value end as peak_value,
    cast(r.threshold as double) as threshold,
    case when r.operator in ('>=', '>') then e.element_at_max else e.element_at_min end as element_no,
    -- the rules version (content hash of the rule tables) the episode was found with
    cast('{{ rules_version() }}' as {{ str_type() }}) as rules_version
from episodes as e
inner join {{ rules_relation('warning_rules') }} as r on e.rule_id = r.rule_id
where
    e.duration_s >= r.min_duration_s
    and {{ dwd_rebuild_filter('cast(e.start_time as date)') }}
