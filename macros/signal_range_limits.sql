{#- Rows of the rule table signal_range_limits (the seed, or the run's snapshot of MySQL, macro
    rule_rows), read at execute time, so that a limit or an action is a data change only. Each row: signal, column_name (decoded ODS column), field_name (landing
    field reported in the quarantine), is_array, min_value, max_value, action
    ('null_field' or 'reject_row'). Optional filter on action. Empty list at parse time. -#}
{% macro get_signal_range_limits(action=none) -%}
    {%- set rows = [] -%}
    {%- for r in rule_rows('signal_range_limits') | sort(attribute='signal', case_sensitive=true) if action is none or r['action'] == action -%}
        {%- if r['action'] not in ('null_field', 'reject_row') -%}
            {{ exceptions.raise_compiler_error("signal_range_limits: unknown action '" ~ r['action'] ~ "' for " ~ r['signal']) }}
        {%- endif -%}
        {%- do rows.append({
            'signal': r['signal'], 'column_name': r['column_name'], 'field_name': r['field_name'],
            'is_array': r['is_array'] in (true, 'true', 'True', 1),
            'min_value': r['min_value'], 'max_value': r['max_value'], 'action': r['action']
        }) -%}
    {%- endfor -%}
    {{ return(rows) }}
{%- endmacro %}

{#- Boolean SQL: the value (scalar) or any element (array) of a column violates a limit row.
    Null never violates (it is handled as a marker or missing block). -#}
{% macro range_violation(expr, limit) -%}
    {%- if limit['is_array'] -%}
        coalesce({{ arr_min(expr) }} < {{ limit['min_value'] }} or {{ arr_max(expr) }} > {{ limit['max_value'] }}, false)
    {%- else -%}
        coalesce({{ expr }} < {{ limit['min_value'] }} or {{ expr }} > {{ limit['max_value'] }}, false)
    {%- endif -%}
{%- endmacro %}

{#- A column with its out-of-limit values (array: elements) replaced by null. -#}
{% macro range_limited(expr, limit) -%}
    {%- if limit['is_array'] -%}
        case
            when {{ range_violation(expr, limit) }}
                then {{ arr_transform(expr, 'x', 'case when x < ' ~ limit['min_value'] ~ ' or x > ' ~ limit['max_value'] ~ ' then null else x end') }}
            else {{ expr }}
        end
    {%- else -%}
        case when {{ range_violation(expr, limit) }} then null else {{ expr }} end
    {%- endif -%}
{%- endmacro %}

{#- Array summary columns of dws cleaning, by landing array field: (min column, max column, scale
    from the ODS element unit to the seed's unit). -#}
{% macro array_summary_columns(field_name) -%}
    {{ return({
        'cell_voltages': ('cell_voltage_min_v', 'cell_voltage_max_v'),
        'probe_temps': ('probe_temp_min_c', 'probe_temp_max_c')
    }[field_name]) }}
{%- endmacro %}

{#- Boolean SQL: a limit row is violated by a frame of the cleaning CTE `alias`. Arrays are
    judged on their per-frame min / max summaries, so the check costs no pass over the elements. -#}
{% macro range_violation_summary(alias, limit) -%}
    {%- if limit['is_array'] -%}
        {%- set cols = array_summary_columns(limit['field_name']) -%}
        coalesce({{ alias }}.{{ cols[0] }} < {{ limit['min_value'] }} or {{ alias }}.{{ cols[1] }} > {{ limit['max_value'] }}, false)
    {%- else -%}
        coalesce({{ alias }}.{{ limit['column_name'] }} < {{ limit['min_value'] }} or {{ alias }}.{{ limit['column_name'] }} > {{ limit['max_value'] }}, false)
    {%- endif -%}
{%- endmacro %}

{#- The original value of a violated limit, as text, for the quarantine. -#}
{% macro range_original_text(alias, limit) -%}
    {%- if limit['is_array'] -%}
        {%- set cols = array_summary_columns(limit['field_name']) -%}
        'min=' || cast({{ alias }}.{{ cols[0] }} as {{ str_type() }}) || ', max=' || cast({{ alias }}.{{ cols[1] }} as {{ str_type() }})
    {%- else -%}
        cast({{ alias }}.{{ limit['column_name'] }} as {{ str_type() }})
    {%- endif -%}
{%- endmacro %}

{#- An array with the elements outside its seed limit nulled, evaluated only where `flag` says
    the frame broke the limit (elsewhere the array is returned as is). `scale` converts the seed's
    unit to the element unit (1000 for V limits on mV elements). -#}
{% macro array_range_limited(expr, field_name, flag, scale=1) -%}
    {%- set l = get_signal_range_limits('null_field') | selectattr('field_name', 'equalto', field_name) | list -%}
    {%- if l -%}
        case when {{ flag }} then {{ arr_transform(expr, 'x', 'case when x < ' ~ (l[0]['min_value'] * scale) ~ ' or x > ' ~ (l[0]['max_value'] * scale) ~ ' then null else x end') }} else {{ expr }} end
    {%- else -%}
        {{ expr }}
    {%- endif -%}
{%- endmacro %}

{#- The cleaned RESS arrays of a kept frame, as select expressions, limited by the seed's range
    limits when DWS nulled the frame's array summary (the conditions cell_nulled, probe_nulled). Where ODS is a view
    (DuckDB) they are decoded from its raw codes (alias o_alias): the join on the lineage key
    keeps the frames first, and only their arrays are decoded. Where ODS is a table (Spark) the
    decoded arrays are read. dws_cell_frame and dwd_cell_deviation_daily both use it. -#}
{% macro dws_cell_arrays(o_alias, cell_nulled, probe_nulled) -%}
    {%- if ods_realtime_is_view() -%}
        {%- set cells = gbt32960_cell_voltages_mv(o_alias ~ '.cell_voltage_codes') -%}
        {%- set probes = gbt32960_probe_temps_c(o_alias ~ '.probe_temp_codes') -%}
    {%- else -%}
        {%- set cells = o_alias ~ '.cell_voltages_mv' -%}
        {%- set probes = o_alias ~ '.probe_temps_c' -%}
    {%- endif -%}
    {{ array_range_limited(cells, 'cell_voltages', cell_nulled, 1000) }}
        as cell_voltages_mv,
    {{ array_range_limited(probes, 'probe_temps', probe_nulled, 1) }}
        as probe_temps_c
{%- endmacro %}

{#- ODS realtime is a view on DuckDB (the landing files are the storage) and a table on Spark,
    whose Derby/Hive metastore cannot hold a view text this long. -#}
{% macro ods_realtime_is_view() -%}
    {{ return(target.type != 'nevspark') }}
{%- endmacro %}
