{#- Rows of the seed signal_range_limits, read at execute time, so that a limit or an action is
    a seed change only. Each row: signal, column_name (decoded ODS column), field_name (landing
    field reported in the quarantine), is_array, min_value, max_value, action
    ('null_field' or 'reject_row'). Optional filter on action. Empty list at parse time. -#}
{% macro get_signal_range_limits(action=none) -%}
    {%- set seed = ref('signal_range_limits') -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set rel = adapter.get_relation(database=seed.database, schema=seed.schema, identifier=seed.identifier) -%}
    {%- if rel is none -%}
        {#- Building DWS without its limits would silently skip the range checks. Compile-only
            callers (sqlfluff, dbt compile, docs) get an empty list instead. -#}
        {%- if invocation_args_dict.get('which') in ('run', 'build') -%}
            {{ exceptions.raise_compiler_error("seed signal_range_limits not found at " ~ seed ~ ": run `dbt seed` (or `dbt build`) first") }}
        {%- endif -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select signal, column_name, field_name, is_array, min_value, max_value, action
        from {{ rel }}
        {% if action is not none %}where action = '{{ action }}'{% endif %}
        order by signal
    {%- endset -%}
    {%- set rows = [] -%}
    {%- for r in run_query(query).rows -%}
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
        coalesce(list_min({{ expr }}) < {{ limit['min_value'] }} or list_max({{ expr }}) > {{ limit['max_value'] }}, false)
    {%- else -%}
        coalesce({{ expr }} < {{ limit['min_value'] }} or {{ expr }} > {{ limit['max_value'] }}, false)
    {%- endif -%}
{%- endmacro %}

{#- A column with its out-of-limit values (array: elements) replaced by null. -#}
{% macro range_limited(expr, limit) -%}
    {%- if limit['is_array'] -%}
        case
            when {{ range_violation(expr, limit) }}
                then list_transform({{ expr }}, lambda x: case when x < {{ limit['min_value'] }} or x > {{ limit['max_value'] }} then null else x end)
            else {{ expr }}
        end
    {%- else -%}
        case when {{ range_violation(expr, limit) }} then null else {{ expr }} end
    {%- endif -%}
{%- endmacro %}
