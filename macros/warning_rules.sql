{#- Rows of the rule table warning_rules (enabled ones: the seed, or the run's snapshot of MySQL,
    macro rule_rows), read at execute time, so that adding or changing a rule is a data change only. Each row: rule_id, warning_type, metric (a column of
    dwd_rule_episode's frame metrics), operator (>=, >, <=, <), threshold, min_duration_s,
    level (1..3), chemistry and vehicle_model scope (ALL or a value). An unknown metric or
    operator stops the build with the rule's id. Empty list at parse time. -#}
{% macro get_warning_rules() -%}
    {%- set metrics = warning_rule_metrics() -%}
    {%- set rows = [] -%}
    {%- for r in rule_rows('warning_rules') | sort(attribute='rule_id', case_sensitive=true) -%}
        {%- if r['enabled'] in (true, 'true', 'True', 1) -%}
            {%- if r['metric'] not in metrics -%}
                {{ exceptions.raise_compiler_error("warning_rules: rule " ~ r['rule_id'] ~ " has unknown metric '" ~ r['metric'] ~ "' (known: " ~ (metrics.keys() | list | join(', ')) ~ ")") }}
            {%- endif -%}
            {%- if r['operator'] not in ('>=', '>', '<=', '<') -%}
                {{ exceptions.raise_compiler_error("warning_rules: rule " ~ r['rule_id'] ~ " has unknown operator '" ~ r['operator'] ~ "' (>=, >, <=, <)") }}
            {%- endif -%}
            {%- if r['level'] not in (1, 2, 3) -%}
                {{ exceptions.raise_compiler_error("warning_rules: rule " ~ r['rule_id'] ~ " has level " ~ r['level'] ~ " (1, 2 or 3)") }}
            {%- endif -%}
            {%- do rows.append({
                'rule_id': r['rule_id'], 'warning_type': r['warning_type'], 'metric': r['metric'],
                'operator': r['operator'], 'threshold': r['threshold'],
                'min_duration_s': r['min_duration_s'], 'level': r['level'],
                'chemistry': r['chemistry'], 'vehicle_model': r['vehicle_model']
            }) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(rows) }}
{%- endmacro %}

{#- The frame metrics a warning rule may test, and the column naming the cell or probe behind
    each (the evidence of an episode). -#}
{% macro warning_rule_metrics() -%}
    {{ return({
        'max_temp_c': 'max_temp_probe_no', 'min_temp_c': 'min_temp_probe_no',
        'temp_diff_c': 'max_temp_probe_no', 'temp_rise_c_per_s': 'max_temp_probe_no',
        'max_cell_voltage_v': 'max_volt_cell_no', 'min_cell_voltage_v': 'min_volt_cell_no',
        'cell_voltage_spread_v': 'min_volt_cell_no', 'insulation_ohm_per_v': none,
        'soc_jump_pct': none, 'total_voltage_v': none, 'total_current_a': none, 'soc_pct': none,
    }) }}
{%- endmacro %}

{#- The false-alarm budget of a warning level (warnings per 1,000 vehicle-days, dbt var
    warning_budget_l2_per_1000) as the one-sided standard-normal quantile z its threshold sits
    at: p = budget / 1000 a vehicle-day, z = Phi^-1(1 - p) (Abramowitz & Stegun 26.2.23, error
    < 4.5e-4; 1 per 1,000 -> z = 3.09). A SQL expression: Jinja has no logarithm. A learnt bar is
    then median + z x 1.4826 x MAD of the fleet's per-vehicle-day statistic (a normal SD from the
    MAD), so that one faulty vehicle, a few dozen of the fleet's days, cannot move its own bar. -#}
{% macro warning_budget_z(per_1000=none) -%}
    {%- set b = per_1000 if per_1000 is not none else var('warning_budget_l2_per_1000', 1.0) -%}
    {%- set t = 'sqrt(-2 * ln(' ~ (b | float) / 1000 ~ '))' -%}
    ({{ t }} - (2.515517 + 0.802853 * {{ t }} + 0.010328 * {{ t }} * {{ t }})
        / (1 + 1.432788 * {{ t }} + 0.189269 * {{ t }} * {{ t }} + 0.001308 * {{ t }} * {{ t }} * {{ t }}))
{%- endmacro %}

{#- One row per vehicle: its model, chemistry and days with data (dws_vehicle x
    dwd_vehicle_daily), the scope and the denominator of the fleet calibration of rules and of
    its firing-rate report. -#}
{% macro vehicle_days_by_scope() -%}
    select
        v.vin,
        v.vehicle_model,
        v.chemistry,
        count(d.date) as vehicle_days
    from {{ ref('dws_vehicle') }} as v
    inner join {{ ref('dwd_vehicle_daily') }} as d on v.vin = d.vin
    group by v.vin, v.vehicle_model, v.chemistry
{%- endmacro %}

{#- A learnt level-2 bar: median + z x 1.4826 x MAD of `value` around its group's `median` (an
    aggregate: use it grouped), never below `floor` (the configured value); 0 when the group has
    no value. -#}
{% macro robust_bar(median, value, z, floor) -%}
    greatest(
        {{ floor }},
        coalesce({{ median }} + {{ z }} * 1.4826 * {{ percentile_cont('abs(' ~ value ~ ' - ' ~ median ~ ')', 0.5) }}, 0)
    )
{%- endmacro %}
