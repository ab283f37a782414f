{#- Restricts an incremental run to the collect dates in var batch_dates (a list or a
    comma-separated string of 'YYYY-MM-DD'). Renders 1 = 1 on a full refresh / first build or
    when batch_dates is not set, so that the build processes everything. -#}
{% macro batch_filter(column) -%}
    {{ date_list_filter(column, batch_dates_list()) }}
{%- endmacro %}

{#- var batch_dates normalised to a list of 'YYYY-MM-DD' strings (empty when not set). -#}
{% macro batch_dates_list() -%}
    {%- set raw = var('batch_dates', none) -%}
    {%- if raw is none or raw == '' -%}
        {{ return([]) }}
    {%- endif -%}
    {%- if raw is string -%}
        {%- set raw = raw.split(',') -%}
    {%- elif raw is not iterable -%}
        {%- set raw = [raw] -%}
    {%- endif -%}
    {%- set out = [] -%}
    {%- for d in raw -%}
        {%- set s = (d | string).strip() -%}
        {%- if modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', s) is none -%}
            {{ exceptions.raise_compiler_error("batch_dates: '" ~ s ~ "' is not YYYY-MM-DD") }}
        {%- endif -%}
        {%- do out.append(s) -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}
