{{
    config(
        pre_hook="{{ dwd_delete_rebuilt_days('start_date') }}",
        **day_incremental('start_date', deletes_first=true)
    )
}}

{%- set gap_s = dwd_segment_gap_s() -%}

-- One row per alarm episode: a maximal run of frames of one vehicle with one GB/T 32960 general
-- alarm bit set, with no step longer than the segment gap (a bit is held until its condition
-- clears, STD16 Table 18; a T-BOX silent for longer than the gap was parked or off). An episode
-- belongs to the day it starts and is rebuilt whole when it runs past midnight, like a trip
-- (macros/dwd_window.sql). The 2016 frame carries one level for all its bits: an episode's level
-- is the highest level reported while its bit was set.

with

bits as (
    {%- for bit, name in gbt32960_alarm_bits() %}
        select
            {{ bit }} as alarm_bit,
            '{{ name }}' as alarm_name,
            cast({{ 2 ** bit }} as bigint) as bit_value
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

frames as (
    select
        f.vin,
        f.collect_time,
        f.general_alarm_flags,
        f.max_alarm_level,
        {{ epoch_seconds('f.collect_time') }} as t_s
    from {{ ref('dws_realtime_frame') }} as f
    where {{ dwd_read_filter('f.collect_date', 'f.collect_time') }}
),

steps as (
    -- neighbours over every frame of the vehicle: a bit clears on the first frame without it
    select
        f.*,
        lag(f.general_alarm_flags) over (partition by f.vin order by f.collect_time) as prev_flags,
        f.t_s - lag(f.t_s) over (partition by f.vin order by f.collect_time) as dt_prev_s,
        lead(f.collect_time) over (partition by f.vin order by f.collect_time) as next_time,
        lead(f.general_alarm_flags) over (partition by f.vin order by f.collect_time) as next_flags,
        lead(f.t_s) over (partition by f.vin order by f.collect_time) - f.t_s as dt_next_s
    from frames as f
),

set_bits as (
    -- alarm frames only (a small share of all frames), one row per bit set
    select
        s.vin,
        s.collect_time,
        s.t_s,
        s.max_alarm_level,
        b.alarm_bit,
        b.alarm_name,
        -- a new episode: the previous frame lacked the bit, or came more than a gap earlier
        case
            when
                s.prev_flags is null
                or s.dt_prev_s > {{ gap_s }}
                or cast(floor(s.prev_flags / b.bit_value) as bigint) % 2 = 0
                then 1
            else 0
        end as is_start,
        -- the frame that cleared it (null: the vehicle went silent with the bit still set)
        case
            when
                s.next_time is not null
                and s.dt_next_s <= {{ gap_s }}
                and cast(floor(s.next_flags / b.bit_value) as bigint) % 2 = 0
                then s.next_time
        end as cleared_time
    from steps as s
    inner join bits as b
        on cast(floor(s.general_alarm_flags / b.bit_value) as bigint) % 2 = 1
    where s.general_alarm_flags > 0
),

numbered as (
    select
        sb.*,
        sum(sb.is_start) over (
            partition by sb.vin, sb.alarm_bit order by sb.collect_time
            rows between unbounded preceding and current row
        ) as episode_no
    from set_bits as sb
),

episodes as (
    select
        n.vin,
        n.alarm_bit,
        n.alarm_name,
        n.episode_no,
        min(n.collect_time) as start_time,
        max(n.collect_time) as end_time,
        max(n.cleared_time) as cleared_time,
        max(n.t_s) - min(n.t_s) as duration_s,
        max(n.max_alarm_level) as alarm_level,
        count(*) as frame_count
    from numbered as n
    group by n.vin, n.alarm_bit, n.alarm_name, n.episode_no
)

select
    e.vin,
    e.alarm_bit,
    e.alarm_name,
    e.start_time,
    cast(e.start_time as date) as start_date,
    e.end_time,
    e.cleared_time,
    e.duration_s,
    e.alarm_level,
    e.frame_count,
    -- a battery alarm (RESS bits) or one of the vehicle's other systems
    e.alarm_bit not in (12, 13, 14, 15, 16, 17) as is_battery_alarm
from episodes as e
where {{ dwd_rebuild_filter('cast(e.start_time as date)') }}
