{#- The cumulative usage-behaviour score, 0 (gentle) .. 100 (harsh), from a vehicle's lifetime
    counters (columns cum_* of `alias`). Five stress shares, each scaled by the share at which
    it counts as fully harsh and capped at 1, weighted (vars; weights sum to 1):

      dc            DC share of the charged Ah                   fast charging (lithium plating)
      c_rate        share of the charged Ah in segments >= 1 C   high charge current
      high_temp     share of online time with a probe >= 40 C    heat (SEI growth)
      deep          share of online time at SOC <= 10 %          deep discharge
      high_soc_rest share of elapsed time parked at SOC >= 90 %  calendar ageing at high SOC

    The score depends only on the cumulative counters, so it is exact across runs. -#}
{% macro usage_behavior_score(alias) -%}
    {%- set w = var('behavior_score_weights', {'dc': 0.30, 'c_rate': 0.15, 'high_temp': 0.25, 'deep': 0.10, 'high_soc_rest': 0.20}) -%}
    {%- set full = var('behavior_score_full_share', {'dc': 1.0, 'c_rate': 0.5, 'high_temp': 0.10, 'deep': 0.05, 'high_soc_rest': 0.5}) -%}
    {#- doubles: a decimal quotient keeps only a few decimals on Spark -#}
    {%- set shares = {
        'dc': 'cast(' ~ alias ~ '.cum_charged_ah_dc as double) / nullif(cast(' ~ alias ~ '.cum_charged_ah as double), 0)',
        'c_rate': 'cast(' ~ alias ~ '.cum_high_c_rate_charged_ah as double) / nullif(cast(' ~ alias ~ '.cum_charged_ah as double), 0)',
        'high_temp': 'cast(' ~ alias ~ '.cum_high_temp_hours as double) / nullif(cast(' ~ alias ~ '.cum_online_hours as double), 0)',
        'deep': 'cast(' ~ alias ~ '.cum_deep_discharge_hours as double) / nullif(cast(' ~ alias ~ '.cum_online_hours as double), 0)',
        'high_soc_rest': 'cast(' ~ alias ~ '.cum_high_soc_rest_hours as double) / nullif(cast(' ~ alias ~ '.cum_elapsed_hours as double), 0)',
    } -%}
    cast(100 * (
        {%- for k in ['dc', 'c_rate', 'high_temp', 'deep', 'high_soc_rest'] %}
        {{ w[k] }} * least(coalesce({{ shares[k] }}, 0) / {{ full[k] }}, 1){% if not loop.last %} +{% endif %}
        {%- endfor %}
    ) as double)
{%- endmacro %}
