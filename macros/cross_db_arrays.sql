{#- Array (list) expressions through adapter.dispatch: DuckDB's list functions and lambdas,
    Spark's array functions and higher-order functions (the default__ form). `var` is the
    lambda's variable name, `expr` its body. -#}

{% macro arr_max(x) %}{{ return(adapter.dispatch('arr_max', 'nev_battery')(x)) }}{% endmacro %}
{% macro default__arr_max(x) %}array_max({{ x }}){% endmacro %}
{% macro duckdb__arr_max(x) %}list_max({{ x }}){% endmacro %}

{% macro arr_min(x) %}{{ return(adapter.dispatch('arr_min', 'nev_battery')(x)) }}{% endmacro %}
{% macro default__arr_min(x) %}array_min({{ x }}){% endmacro %}
{% macro duckdb__arr_min(x) %}list_min({{ x }}){% endmacro %}

{#- Sum of the non-null elements (null for an empty array, as DuckDB's list_sum). -#}
{% macro arr_sum(x) %}{{ return(adapter.dispatch('arr_sum', 'nev_battery')(x)) }}{% endmacro %}
{% macro default__arr_sum(x) %}case when size({{ x }}) > 0 then aggregate({{ x }}, cast(0 as bigint), (acc, e) -> acc + coalesce(e, 0)) end{% endmacro %}
{% macro duckdb__arr_sum(x) %}list_sum({{ x }}){% endmacro %}

{% macro arr_contains(x, v) %}{{ return(adapter.dispatch('arr_contains', 'nev_battery')(x, v)) }}{% endmacro %}
{% macro default__arr_contains(x, v) %}array_contains({{ x }}, {{ v }}){% endmacro %}
{% macro duckdb__arr_contains(x, v) %}list_contains({{ x }}, {{ v }}){% endmacro %}

{% macro arr_transform(x, var, expr) %}{{ return(adapter.dispatch('arr_transform', 'nev_battery')(x, var, expr)) }}{% endmacro %}
{% macro default__arr_transform(x, var, expr) %}transform({{ x }}, {{ var }} -> {{ expr }}){% endmacro %}
{% macro duckdb__arr_transform(x, var, expr) %}list_transform({{ x }}, lambda {{ var }}: {{ expr }}){% endmacro %}

{% macro arr_filter(x, var, expr) %}{{ return(adapter.dispatch('arr_filter', 'nev_battery')(x, var, expr)) }}{% endmacro %}
{% macro default__arr_filter(x, var, expr) %}filter({{ x }}, {{ var }} -> {{ expr }}){% endmacro %}
{% macro duckdb__arr_filter(x, var, expr) %}list_filter({{ x }}, lambda {{ var }}: {{ expr }}){% endmacro %}

{% macro arr_concat(a, b) %}{{ return(adapter.dispatch('arr_concat', 'nev_battery')(a, b)) }}{% endmacro %}
{% macro default__arr_concat(a, b) %}concat({{ a }}, {{ b }}){% endmacro %}
{% macro duckdb__arr_concat(a, b) %}list_concat({{ a }}, {{ b }}){% endmacro %}

{#- Sorted distinct elements. -#}
{% macro arr_sorted_set(x) %}{{ return(adapter.dispatch('arr_sorted_set', 'nev_battery')(x)) }}{% endmacro %}
{% macro default__arr_sorted_set(x) %}array_sort(array_distinct({{ x }})){% endmacro %}
{% macro duckdb__arr_sorted_set(x) %}list_sort(list_distinct({{ x }})){% endmacro %}

{#- An array literal of SQL expressions. -#}
{% macro arr_literal(items) %}{{ return(adapter.dispatch('arr_literal', 'nev_battery')(items)) }}{% endmacro %}
{% macro default__arr_literal(items) %}array({{ items | join(', ') }}){% endmacro %}
{% macro duckdb__arr_literal(items) %}[{{ items | join(', ') }}]{% endmacro %}

{% macro empty_string_array() %}{{ return(adapter.dispatch('empty_string_array', 'nev_battery')()) }}{% endmacro %}
{% macro default__empty_string_array() %}cast(array() as array<string>){% endmacro %}
{% macro duckdb__empty_string_array() %}cast([] as varchar[]){% endmacro %}

{#- A struct literal from (name, SQL expression) pairs, and a field of a struct. -#}
{% macro struct_literal(pairs) %}{{ return(adapter.dispatch('struct_literal', 'nev_battery')(pairs)) }}{% endmacro %}
{% macro default__struct_literal(pairs) %}named_struct({% for k, v in pairs %}'{{ k }}', {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}){% endmacro %}
{% macro duckdb__struct_literal(pairs) %}{ {%- for k, v in pairs %}'{{ k }}': {{ v }}{% if not loop.last %}, {% endif %}{% endfor -%} }{% endmacro %}

{% macro struct_field(s, name) %}{{ return(adapter.dispatch('struct_field', 'nev_battery')(s, name)) }}{% endmacro %}
{% macro default__struct_field(s, name) %}{{ s }}.{{ name }}{% endmacro %}
{% macro duckdb__struct_field(s, name) %}struct_extract({{ s }}, '{{ name }}'){% endmacro %}

{#- The string type for casts (Spark has no bare varchar). -#}
{% macro str_type() %}{{ return(adapter.dispatch('str_type', 'nev_battery')()) }}{% endmacro %}
{% macro default__str_type() %}string{% endmacro %}
{% macro duckdb__str_type() %}varchar{% endmacro %}

{% macro arr_len(x) %}{{ return(adapter.dispatch('arr_len', 'nev_battery')(x)) }}{% endmacro %}
{% macro default__arr_len(x) %}size({{ x }}){% endmacro %}
{% macro duckdb__arr_len(x) %}len({{ x }}){% endmacro %}

{#- One output row per element (in a select list). -#}
{% macro unnest_array(x) %}{{ return(adapter.dispatch('unnest_array', 'nev_battery')(x)) }}{% endmacro %}
{% macro default__unnest_array(x) %}explode({{ x }}){% endmacro %}
{% macro duckdb__unnest_array(x) %}unnest({{ x }}){% endmacro %}

{#- Elements of an array with their 0-based position, one output row per element (in a select
    list): `pos` and `val` columns. -#}
{% macro unnest_with_position(x, pos, val) %}{{ return(adapter.dispatch('unnest_with_position', 'nev_battery')(x, pos, val)) }}{% endmacro %}
{% macro default__unnest_with_position(x, pos, val) %}posexplode({{ x }}) as ({{ pos }}, {{ val }}){% endmacro %}
{% macro duckdb__unnest_with_position(x, pos, val) %}unnest(range(len({{ x }}))) as {{ pos }}, unnest({{ x }}) as {{ val }}{% endmacro %}

{#- Median of the non-null elements of a numeric array: the lower middle element (the same on
    every engine). -#}
{% macro arr_median(x) %}{{ return(adapter.dispatch('arr_median', 'nev_battery')(x)) }}{% endmacro %}
{% macro default__arr_median(x) %}element_at(array_sort(filter({{ x }}, e -> e is not null)), cast(floor((size(filter({{ x }}, e -> e is not null)) + 1) / 2) as int)){% endmacro %}
{% macro duckdb__arr_median(x) %}list_sort(list_filter({{ x }}, lambda e: e is not null))[cast(floor((len(list_filter({{ x }}, lambda e: e is not null)) + 1) / 2) as integer)]{% endmacro %}
