{#- Where the rules of a run come from (src/nev_battery/rules.py): 'seed' (the seeds
    warning_rules, signal_range_limits and detector_settings, the embedded default) or 'mysql'
    (read from MySQL/MariaDB and validated by nev-battery before dbt ran, and handed to this run as
    the var rules_snapshot: one consistent set for the whole run, on every engine). -#}
{% macro rules_source() -%}
    {%- set s = var('rules_source', 'seed') -%}
    {%- if s not in ('seed', 'mysql') -%}
        {{ exceptions.raise_compiler_error("var rules_source is '" ~ s ~ "': seed or mysql") }}
    {%- endif -%}
    {{ return(s) }}
{%- endmacro %}

{#- The column types of the rule tables (as the seeds' column_types and rules.TABLES say):
    s string, d double, i integer, b boolean. -#}
{% macro rules_columns(name) -%}
    {{ return({
        'warning_rules': [('rule_id', 's'), ('warning_type', 's'), ('metric', 's'), ('operator', 's'),
                          ('threshold', 'd'), ('min_duration_s', 'd'), ('level', 'i'), ('chemistry', 's'),
                          ('vehicle_model', 's'), ('enabled', 'b'), ('description', 's')],
        'signal_range_limits': [('signal', 's'), ('column_name', 's'), ('field_name', 's'), ('is_array', 'b'),
                                ('min_value', 'd'), ('max_value', 'd'), ('unit', 's'), ('action', 's'),
                                ('description', 's')],
        'detector_settings': [('setting', 's'), ('value', 'd'), ('description', 's')],
    }[name]) }}
{%- endmacro %}

{#- Every row of a rule table as dicts, at execute time (empty list at parse time): from the run's
    snapshot (rules_source mysql) or from the seed. The seed missing at run time stops the build. -#}
{% macro rule_rows(name) -%}
    {%- if rules_source() == 'mysql' -%}
        {%- set snap = var('rules_snapshot', none) -%}
        {%- if snap is none or name not in snap -%}
            {%- if name == 'detector_settings' -%}
                {{ return([]) }}
            {%- endif -%}
            {{ exceptions.raise_compiler_error("rules_source is mysql but the run has no rules_snapshot of " ~ name ~ ": run through nev-battery (NEV_RULES_URL), which reads and validates the rules before dbt runs") }}
        {%- endif -%}
        {{ return(snap[name]) }}
    {%- endif -%}
    {%- set seed = ref(name) -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set rel = adapter.get_relation(database=seed.database, schema=seed.schema, identifier=seed.identifier) -%}
    {%- if rel is none -%}
        {%- if invocation_args_dict.get('which') in ('run', 'build') -%}
            {{ exceptions.raise_compiler_error("seed " ~ name ~ " not found at " ~ seed ~ ": run `dbt seed` (or `dbt build`) first") }}
        {%- endif -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set cols = rules_columns(name) -%}
    {%- set query -%}
        select {% for c, t in cols %}{{ c }}{{ ', ' if not loop.last }}{% endfor %}
        from {{ rel }}
    {%- endset -%}
    {%- set rows = [] -%}
    {%- for r in run_query(query).rows -%}
        {%- set row = {} -%}
        {%- for c, t in cols -%}
            {%- do row.update({c: r[c]}) -%}
        {%- endfor -%}
        {%- do rows.append(row) -%}
    {%- endfor -%}
    {{ return(rows | sort(attribute=cols[0][0], case_sensitive=true)) }}
{%- endmacro %}

{#- A SQL literal of a rule value of type t (s, d, i, b). -#}
{% macro rule_literal(v, t) -%}
    {%- if v is none -%}
        cast(null as {{ {'s': str_type(), 'd': 'double', 'i': 'integer', 'b': 'boolean'}[t] }})
    {%- elif t == 's' -%}
        {%- set text = (v | string).replace("'", "''") -%}
        {%- if target.type in ('spark', 'nevspark') -%}{%- set text = text.replace('\\', '\\\\') -%}{%- endif -%}
        cast('{{ text }}' as {{ str_type() }})
    {%- elif t == 'd' -%}
        cast({{ v | float | string }} as double)
    {%- elif t == 'i' -%}
        cast({{ v | int }} as integer)
    {%- else -%}
        {{ 'true' if v in (true, 'true', 'True', 1) else 'false' }}
    {%- endif -%}
{%- endmacro %}

{#- The relation of a rule table to join: ref() of the seed, or (rules from MySQL) the run's
    snapshot as a subquery with the seed's columns and types. Use as `from {{ rules_relation(...) }}
    as r`. -#}
{% macro rules_relation(name) -%}
    {%- if rules_source() == 'seed' -%}
        {{ return(ref(name)) }}
    {%- endif -%}
    {%- set cols = rules_columns(name) -%}
    {%- set rows = rule_rows(name) -%}
    {%- set sql -%}
        (
        {%- for r in rows %}
        select {% for c, t in cols %}{{ rule_literal(r[c], t) }} as {{ c }}{{ ', ' if not loop.last }}{% endfor %}
        {%- if not loop.last %} union all{% endif %}
        {%- else %}
        select {% for c, t in cols %}{{ rule_literal(none, t) }} as {{ c }}{{ ', ' if not loop.last }}{% endfor %} where 1 = 0
        {%- endfor %}
        )
    {%- endset -%}
    {{ return(sql) }}
{%- endmacro %}

{#- A rule value in the canonical text of the rules version (rules.fmt): numbers by %.12g,
    booleans true/false, null as \N. -#}
{% macro rule_text(v, t) -%}
    {%- if v is none -%}
        {{ return('\\N') }}
    {%- elif t == 'd' -%}
        {{ return('%.12g' | format(v | float)) }}
    {%- elif t == 'i' -%}
        {{ return('%d' | format(v | int)) }}
    {%- elif t == 'b' -%}
        {{ return('true' if v in (true, 'true', 'True', 1) else 'false') }}
    {%- endif -%}
    {{ return(v | string) }}
{%- endmacro %}

{#- The rows of the three rule tables as this run uses them: detector settings take the run's
    var of the same name (what the models read). -#}
{% macro rules_as_used() -%}
    {%- set out = {} -%}
    {%- for name in ('warning_rules', 'signal_range_limits', 'detector_settings') -%}
        {%- set rows = rule_rows(name) -%}
        {%- if name == 'detector_settings' -%}
            {%- set used = [] -%}
            {%- for r in rows -%}
                {%- do used.append({'setting': r['setting'], 'value': var(r['setting'], r['value']), 'description': r['description']}) -%}
            {%- endfor -%}
            {%- set rows = used -%}
        {%- endif -%}
        {%- do out.update({name: rows}) -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{#- The rules version: the content hash of the three rule tables (rules.canonical_text), as
    nev-battery passes it (var rules_version), or computed here on a plain dbt run. -#}
{% macro rules_version() -%}
    {%- set v = var('rules_version', none) -%}
    {%- if v is not none -%}
        {{ return(v | string) }}
    {%- endif -%}
    {#- computed at parse time too: the seeds are then refs of the model calling it -#}
    {%- set h = rules_content_hash() -%}
    {{ return(h if execute else '') }}
{%- endmacro %}

{% macro rules_content_hash() -%}
    {%- set tables = rules_as_used() -%}
    {%- set lines = [] -%}
    {%- for name in ('warning_rules', 'signal_range_limits', 'detector_settings') -%}
        {%- set cols = rules_columns(name) -%}
        {%- for r in tables[name] | sort(attribute=cols[0][0], case_sensitive=true) -%}
            {%- set parts = [name] -%}
            {%- for c, t in cols -%}
                {%- do parts.append(rule_text(r[c], t)) -%}
            {%- endfor -%}
            {%- do lines.append(parts | join('|')) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(local_md5(lines | join('\n'))[:16]) }}
{%- endmacro %}

{#- Print the rules version of this project's rules (dbt run-operation print_rules_version). -#}
{% macro print_rules_version() -%}
    {{ print(rules_version()) }}
{%- endmacro %}

{#- dws_rules_history: every value of the rule tables as this run uses them, one row per (table,
    key, column), the value in the canonical text. Refs the seeds at parse time (rules from the
    seeds). -#}
{% macro rules_history_current() -%}
    {%- set tables = rules_as_used() -%}
    {%- set parts = [] -%}
    {%- for name, rows in tables.items() -%}
        {%- set cols = rules_columns(name) -%}
        {%- for r in rows -%}
            {%- for c, t in cols[1:] -%}
                {%- do parts.append("select cast('" ~ name ~ "' as " ~ str_type() ~ ") as table_name, "
                    ~ rule_literal(r[cols[0][0]], 's') ~ " as rule_key, cast('" ~ c ~ "' as "
                    ~ str_type() ~ ") as column_name, "
                    ~ rule_literal(none if r[c] is none else rule_text(r[c], t), 's') ~ " as rule_value") -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if not parts -%}
        {%- do parts.append("select cast(null as " ~ str_type() ~ ") as table_name, cast(null as "
            ~ str_type() ~ ") as rule_key, cast(null as " ~ str_type() ~ ") as column_name, cast(null as "
            ~ str_type() ~ ") as rule_value where 1 = 0") -%}
    {%- endif -%}
    {{ return(parts | join('\n    union all\n    ')) }}
{%- endmacro %}

{#- dws_rules_history: the latest row of every (table, key, column) the history holds. -#}
{% macro rules_history_previous() -%}
    {%- if is_incremental() -%}
        select l.table_name, l.rule_key, l.column_name, l.rule_value, l.change_type
        from (
            select
                h.table_name, h.rule_key, h.column_name, h.new_value as rule_value, h.change_type,
                row_number() over (
                    partition by h.table_name, h.rule_key, h.column_name
                    order by h.detected_at desc, h.rules_version desc
                ) as rn
            from {{ this }} as h
        ) as l
        where l.rn = 1
    {%- else -%}
        select cast(null as {{ str_type() }}) as table_name, cast(null as {{ str_type() }}) as rule_key,
            cast(null as {{ str_type() }}) as column_name, cast(null as {{ str_type() }}) as rule_value,
            cast(null as {{ str_type() }}) as change_type
        where 1 = 0
    {%- endif -%}
{%- endmacro %}

{#- dws_rules_history: the rules version of the latest run that changed a rule (null at first). -#}
{% macro rules_history_previous_version() -%}
    {%- if is_incremental() -%}
        select max(h.rules_version) as rules_version
        from {{ this }} as h
        where h.detected_at = (select max(x.detected_at) from {{ this }} as x)
    {%- else -%}
        select cast(null as {{ str_type() }}) as rules_version
    {%- endif -%}
{%- endmacro %}
