{#- GB/T 32960.3-2016 field widths (battery-brief §1.2, §1.3, §1.5) of the landing columns that
    carry abnormal / invalid markers. gear and general_alarm_flags are bit fields without markers;
    insulation_resistance has no marker in 2016 but 0xFFFE/0xFFFF in 2025 (outside 0..60000 anyway). -#}
{% macro gbt32960_marker_fields() -%}
    {{ return({
        'vehicle_status': 'byte', 'charge_status': 'byte', 'run_mode': 'byte',
        'speed': 'word', 'odometer': 'dword', 'total_voltage': 'word', 'total_current': 'word',
        'soc': 'byte', 'dcdc_status': 'byte', 'insulation_resistance': 'word',
        'accel_pedal': 'byte', 'brake_pedal': 'byte',
        'max_volt_subsys': 'byte', 'max_volt_cell_no': 'byte', 'max_cell_voltage': 'word',
        'min_volt_subsys': 'byte', 'min_volt_cell_no': 'byte', 'min_cell_voltage': 'word',
        'max_temp_subsys': 'byte', 'max_temp_probe_no': 'byte', 'max_temp': 'byte',
        'min_temp_subsys': 'byte', 'min_temp_probe_no': 'byte', 'min_temp': 'byte',
        'max_alarm_level': 'byte',
        'cell_voltages': 'word', 'probe_temps': 'byte'
    }) }}
{%- endmacro %}

{#- Marker code of a field width: kind 'abnormal' (0xFE...) or 'invalid' (0xFF...). -#}
{% macro gbt32960_marker_code(width, kind) -%}
    {%- set codes = {
        'byte': {'abnormal': 254, 'invalid': 255},
        'word': {'abnormal': 65534, 'invalid': 65535},
        'dword': {'abnormal': 4294967294, 'invalid': 4294967295}
    } -%}
    {{- return(codes[width][kind]) -}}
{%- endmacro %}

{#- A landing code with its abnormal and invalid markers turned into null. -#}
{% macro gbt32960_value(column, field) -%}
    {%- set width = gbt32960_marker_fields()[field] -%}
    nullif(nullif({{ column }}, {{ gbt32960_marker_code(width, 'abnormal') }}), {{ gbt32960_marker_code(width, 'invalid') }})
{%- endmacro %}

{#- List of the field names whose value is the given marker kind (empty list when none);
    for the array fields a name is listed when any element is the marker. The list is built only
    for the rare frames that carry a marker at all (CASE evaluates its branch on those rows only);
    cell_code_max / probe_code_max are the arrays' largest codes, computed once upstream. -#}
{% macro gbt32960_marker_field_list(relation_alias, kind) -%}
    {%- set items = [] -%}
    {%- set any = [] -%}
    {%- for field, width in gbt32960_marker_fields().items() -%}
        {%- set code = gbt32960_marker_code(width, kind) -%}
        {%- if field in ('cell_voltages', 'probe_temps') -%}
            {%- set mx = relation_alias ~ '.' ~ ('cell_code_max' if field == 'cell_voltages' else 'probe_code_max') -%}
            {%- do any.append(mx ~ " >= " ~ code) -%}
            {%- do items.append("case when " ~ mx ~ " >= " ~ code ~ " and " ~ arr_contains(relation_alias ~ "." ~ field, code) ~ " then '" ~ field ~ "' end") -%}
        {%- else -%}
            {%- do any.append(relation_alias ~ "." ~ field ~ " = " ~ code) -%}
            {%- do items.append("case when " ~ relation_alias ~ "." ~ field ~ " = " ~ code ~ " then '" ~ field ~ "' end") -%}
        {%- endif -%}
    {%- endfor -%}
    case
        when {{ any | join(' or ') }}
            then {{ arr_filter(arr_literal(items), 'f', 'f is not null') }}
        else {{ empty_string_array() }}
    end
{%- endmacro %}

{#- SQL case expression giving the marker code text ('0xFE', '0xFFFE', '0xFFFFFFFE', ...) of a
    field-name expression, for the quarantine's original_value. -#}
{% macro gbt32960_marker_text(field_expr, kind) -%}
    {%- set by_width = {'byte': [], 'word': [], 'dword': []} -%}
    {%- for field, width in gbt32960_marker_fields().items() -%}
        {%- do by_width[width].append("'" ~ field ~ "'") -%}
    {%- endfor -%}
    {%- set suffix = 'E' if kind == 'abnormal' else 'F' -%}
    case
        when {{ field_expr }} in ({{ by_width['word'] | join(', ') }}) then '0xFFF{{ suffix }}'
        when {{ field_expr }} in ({{ by_width['dword'] | join(', ') }}) then '0xFFFFFFF{{ suffix }}'
        else '0xF{{ suffix }}'
    end
{%- endmacro %}

{#- Decoded scalar columns of ods_gbt32960_realtime carried into DWS (besides keys and times). -#}
{% macro gbt32960_scalar_columns() -%}
    {{ return([
        'vehicle_status', 'charge_status', 'run_mode', 'dcdc_status',
        'speed_kmh', 'odometer_km', 'total_voltage_v', 'total_current_a', 'is_current_sign_flipped',
        'soc_pct', 'gear_code', 'gear_position', 'has_drive_force', 'has_brake_force',
        'insulation_resistance_kohm', 'accel_pedal_pct', 'brake_pedal_pct', 'is_brake_applied',
        'max_volt_subsys_no', 'max_volt_cell_no', 'max_cell_voltage_v',
        'min_volt_subsys_no', 'min_volt_cell_no', 'min_cell_voltage_v',
        'max_temp_subsys_no', 'max_temp_probe_no', 'max_temp_c',
        'min_temp_subsys_no', 'min_temp_probe_no', 'min_temp_c',
        'max_alarm_level', 'general_alarm_flags'
    ]) }}
{%- endmacro %}

{#- VIN check: 17 characters of [A-HJ-NPR-Z0-9] (ISO 3779: no I, O, Q). -#}
{% macro is_valid_vin(column) -%}
    {{ return(adapter.dispatch('is_valid_vin', 'nev_battery')(column)) }}
{%- endmacro %}

{% macro duckdb__is_valid_vin(column) -%}
    coalesce(regexp_full_match({{ column }}, '[A-HJ-NPR-Z0-9]{17}'), false)
{%- endmacro %}

{% macro default__is_valid_vin(column) -%}
    coalesce({{ column }} rlike '^[A-HJ-NPR-Z0-9]{17}$', false)
{%- endmacro %}

{#- GB/T 32960.3-2016 Table 18: bit of general_alarm_flags -> alarm name. A protocol constant
    (kept in line with nev_battery.catalog.ALARM_BITS, which the simulator uses). -#}
{% macro gbt32960_alarm_bits() -%}
    {{ return([
        (0, 'temperature_difference'), (1, 'battery_high_temperature'), (2, 'ress_over_voltage'),
        (3, 'ress_under_voltage'), (4, 'soc_low'), (5, 'cell_over_voltage'),
        (6, 'cell_under_voltage'), (7, 'soc_too_high'), (8, 'soc_jump'), (9, 'ress_mismatch'),
        (10, 'poor_cell_consistency'), (11, 'insulation'), (12, 'dcdc_temperature'),
        (13, 'braking_system'), (14, 'dcdc_status'), (15, 'motor_controller_temperature'),
        (16, 'high_voltage_interlock'), (17, 'motor_temperature'), (18, 'ress_over_charge'),
    ]) }}
{%- endmacro %}

{#- Boolean SQL: bit `bit` of an integer column is set (portable: no bit operators). -#}
{% macro bit_is_set(col, bit) -%}
    (cast(floor({{ col }} / {{ 2 ** bit }}) as bigint) % 2 = 1)
{%- endmacro %}

{#- The RESS arrays decoded from their raw codes: cell voltages stay integer millivolts, the
    markers (0xFFFE abnormal, 0xFFFF invalid) become null elements; probe codes are degC + 40,
    markers 0xFE / 0xFF. code_max is the array's largest code (ODS computes it once per frame
    for its summaries). ODS decodes every frame with these; models that keep only a few frames
    (dws_cell_arrays) decode the raw codes after their join, with the same expressions. -#}
{% macro gbt32960_cell_voltages_mv(codes, code_max=none) -%}
    {%- set code_max = code_max if code_max is not none else arr_max(codes) -%}
    case
        when {{ code_max }} >= 65534
            then {{ arr_transform(codes, 'x', 'case when x >= 65534 then null else x end') }}
        else {{ codes }}
    end
{%- endmacro %}

{% macro gbt32960_probe_temps_c(codes) -%}
    {{ arr_transform(codes, 'x', 'case when x >= 254 then null else cast(x - 40 as double) end') }}
{%- endmacro %}
