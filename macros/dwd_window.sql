{#- Incremental windows of the DWD summaries.

    A charge segment or a trip belongs to the day it starts (its `start_date`) and may run past
    midnight. A run for the batch days B therefore
      rebuilds  every start day in B and the day before each (B - 1): a segment that started
                before midnight and was still open when that day was first built is rebuilt
                whole once the next day has landed;
      reads     frames of the rebuilt days and the day after, and the last gap before midnight
                of the day before (to tell a segment running over midnight from one that
                starts at 00:00).
    Rebuilt days are deleted first and re-inserted (`dwd_delete_rebuilt_days` as a pre-hook,
    append strategy), so a day that lost all its segments is emptied too, and every segment comes
    out exactly once. Segments longer than `dwd_lookback_days` + 1 days would be cut; no charge or
    trip is. With no batch_dates (first build, full refresh) everything is built. -#}

{% macro dwd_rebuild_dates() -%}
    {%- set out = [] -%}
    {%- for d in batch_dates_list() -%}
        {%- set day = modules.datetime.date.fromisoformat(d) -%}
        {%- for k in range(var('dwd_lookback_days', 1) + 1) -%}
            {%- set s = (day - modules.datetime.timedelta(days=k)).isoformat() -%}
            {%- if s not in out %}{% do out.append(s) %}{% endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(out | sort) }}
{%- endmacro %}

{#- Days read whole: the rebuilt days and the day after each. -#}
{% macro dwd_read_dates() -%}
    {%- set out = [] -%}
    {%- for d in dwd_rebuild_dates() -%}
        {%- set day = modules.datetime.date.fromisoformat(d) -%}
        {%- for k in [0, 1] -%}
            {%- set s = (day + modules.datetime.timedelta(days=k)).isoformat() -%}
            {%- if s not in out %}{% do out.append(s) %}{% endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(out | sort) }}
{%- endmacro %}

{#- Days of which only the last segment gap before midnight is read: the day before each rebuilt
    day (a segment running over that midnight has a frame within one gap of it). -#}
{% macro dwd_tail_dates() -%}
    {%- set whole = dwd_read_dates() -%}
    {%- set out = [] -%}
    {%- for d in dwd_rebuild_dates() -%}
        {%- set s = (modules.datetime.date.fromisoformat(d) - modules.datetime.timedelta(days=1)).isoformat() -%}
        {%- if s not in out and s not in whole %}{% do out.append(s) %}{% endif -%}
    {%- endfor -%}
    {{ return(out | sort) }}
{%- endmacro %}

{#- Seconds between two frames of one segment above which a new segment starts. -#}
{% macro dwd_segment_gap_s() -%}
    {{ return(var('report_period_s', 10) * var('segment_gap_factor', 30)) }}
{%- endmacro %}

{#- `column in (dates)` on an incremental run with batch dates, else 1 = 1. -#}
{% macro date_list_filter(column, dates) -%}
    {%- if dates | length > 0 and day_model_is_incremental() -%}
        {{ column }} in ({% for d in dates %}cast('{{ d }}' as date){% if not loop.last %}, {% endif %}{% endfor %})
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{% macro dwd_rebuild_filter(column) -%}
    {{ date_list_filter(column, dwd_rebuild_dates()) }}
{%- endmacro %}

{% macro dwd_read_filter(date_column, time_column) -%}
    {%- set tail = dwd_tail_dates() -%}
    {%- if dwd_rebuild_dates() | length > 0 and day_model_is_incremental() -%}
        ({{ date_list_filter(date_column, dwd_read_dates()) }}
        {%- if tail %}
            or ({{ date_list_filter(date_column, tail) }}
                and {{ time_column }} >= {{ dbt.dateadd('second', -dwd_segment_gap_s(), dbt.dateadd('day', 1, 'cast(' ~ date_column ~ ' as timestamp)')) }})
        {%- endif %})
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}

{#- Pre-hook of the DWD incremental models: empty the days about to be rebuilt. -#}
{% macro dwd_delete_rebuilt_days(column) -%}
    {#- Spark: no DELETE on parquet tables; the day partitions a run writes are overwritten -#}
    {%- if day_model_is_incremental() and target.type not in ('spark', 'nevspark') -%}
        {#- no batch dates on an incremental run: everything is rebuilt, so everything goes -#}
        delete from {{ this }} where {{ dwd_rebuild_filter(column) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- First day dwd_vehicle_lifetime recomputes: the earliest rebuilt day (every later day depends
    on it); none when everything is built. -#}
{% macro lifetime_start_date() -%}
    {%- set days = dwd_rebuild_dates() -%}
    {%- if day_model_is_incremental() and days | length > 0 -%}
        {{ return(days[0]) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{% macro lifetime_delete_from() -%}
    {%- set start = lifetime_start_date() -%}
    {%- if day_model_is_incremental() and target.type not in ('spark', 'nevspark') -%}
        delete from {{ this }}{% if start %} where date >= cast('{{ start }}' as date){% endif %}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
