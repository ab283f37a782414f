{#- Rows where column_name is outside [min_value, max_value] (nulls pass). -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true, where=none) %}
select *
from {{ model }}
where
    {{ column_name }} is not null
    and (
        1 = 0
        {%- if min_value is not none %}
        or {{ column_name }} {{ '<' if inclusive else '<=' }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
        or {{ column_name }} {{ '>' if inclusive else '>=' }} {{ max_value }}
        {%- endif %}
    )
{% endtest %}

{#- Combinations of the given columns that occur more than once. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select
    {{ combination_of_columns | join(', ') }},
    count(*) as n_records
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Rows where the boolean SQL expression is not true. -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not coalesce(({{ column_name ~ ' ' if column_name else '' }}{{ expression }}), false)
{% endtest %}

{#- Fails on every row whose column decreases against the previous row of its group in
    `order_by` order (a cumulative counter or an odometer must never go down). -#}
{% test is_non_decreasing(model, column_name, group_by, order_by, tolerance=0) %}
with ordered as (
    select
        {{ column_name }} as value,
        lag({{ column_name }}) over (partition by {{ group_by }} order by {{ order_by }}) as previous_value
    from {{ model }}
)
select * from ordered
where value < previous_value - {{ tolerance }}
{% endtest %}

{#- An OCV curve whose voltage does not rise strictly with the SOC cannot be read backwards:
    the pairs of neighbouring points (per chemistry) where it falls or stays flat. -#}
{% test ocv_curve_is_increasing(model) %}
with ordered as (
    select
        chemistry,
        soc_pct,
        ocv_v,
        lag(ocv_v) over (partition by chemistry order by soc_pct) as prev_ocv_v
    from {{ model }}
)

select * from ordered
where prev_ocv_v is not null and ocv_v <= prev_ocv_v
{% endtest %}
