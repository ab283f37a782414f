{#- The one place where the landing root is resolved: env NEV_LANDING_ROOT, else var landing_root.
    Trailing slashes are stripped so that '<root>/<relative path>' is canonical. -#}
{% macro landing_root() -%}
    {%- set root = env_var('NEV_LANDING_ROOT', var('landing_root')) | string -%}
    {{- return(root.rstrip('/')) -}}
{%- endmacro %}
