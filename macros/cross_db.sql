{#- Dialect helpers through adapter.dispatch: DuckDB and Spark differ here; default__ is the
    Spark form (no `::`, no qualify). -#}

{#- Seconds since the epoch of a timestamp, as a number (UTC session assumed on Spark). -#}
{% macro epoch_seconds(ts) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'nev_battery')(ts)) }}
{%- endmacro %}

{% macro default__epoch_seconds(ts) -%}
    cast(unix_timestamp({{ ts }}) as double)
{%- endmacro %}

{% macro duckdb__epoch_seconds(ts) -%}
    epoch({{ ts }})
{%- endmacro %}

{#- The value of `arg` on the row with the smallest / largest `val` (rows with a null val skipped). -#}
{% macro min_by(arg, val) -%}
    {{ return(adapter.dispatch('min_by', 'nev_battery')(arg, val)) }}
{%- endmacro %}

{% macro default__min_by(arg, val) -%}
    min_by({{ arg }}, {{ val }})
{%- endmacro %}

{% macro duckdb__min_by(arg, val) -%}
    arg_min({{ arg }}, {{ val }})
{%- endmacro %}

{% macro max_by(arg, val) -%}
    {{ return(adapter.dispatch('max_by', 'nev_battery')(arg, val)) }}
{%- endmacro %}

{% macro default__max_by(arg, val) -%}
    max_by({{ arg }}, {{ val }})
{%- endmacro %}

{% macro duckdb__max_by(arg, val) -%}
    arg_max({{ arg }}, {{ val }})
{%- endmacro %}

{#- The first / last non-null value of `col` in time order within a group. -#}
{% macro first_non_null(col, time_col) -%}
    {{ min_by(col, 'case when ' ~ col ~ ' is not null then ' ~ time_col ~ ' end') }}
{%- endmacro %}

{% macro last_non_null(col, time_col) -%}
    {{ max_by(col, 'case when ' ~ col ~ ' is not null then ' ~ time_col ~ ' end') }}
{%- endmacro %}

{#- Sum of a float expression in fixed point (`scale` decimals), returned as a double. Float
    addition is not associative and a parallel aggregate adds in any order, so a plain sum can
    differ in its last bits between a full and a day-by-day build; a decimal sum cannot. -#}
{% macro exact_sum(expr, scale=6) -%}
    cast(sum(cast({{ expr }} as decimal(38, {{ scale }}))) as double)
{%- endmacro %}

{#- Exact percentile with linear interpolation between the two nearest values (p in 0..1). -#}
{% macro percentile_cont(expr, p) -%}
    {{ return(adapter.dispatch('percentile_cont', 'nev_battery')(expr, p)) }}
{%- endmacro %}

{% macro default__percentile_cont(expr, p) -%}
    percentile({{ expr }}, {{ p }})
{%- endmacro %}

{% macro duckdb__percentile_cont(expr, p) -%}
    quantile_cont({{ expr }}, {{ p }})
{%- endmacro %}

{#- First day of the week (Monday) or month of a date, as a date. -#}
{% macro period_start(period, d) -%}
    cast(date_trunc('{{ period }}', {{ d }}) as date)
{%- endmacro %}
