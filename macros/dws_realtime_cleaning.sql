{#- The DWS cleaning of ods_gbt32960_realtime, rendered as a chain of CTEs ending in `checked`
    (the caller writes `with {{ dws_realtime_cleaning_ctes() }} select ... from checked`).
    It is evaluated once, by dws_realtime_checked; dws_realtime_frame and dws_quarantine read that
    table, so the frame and its quarantine always agree.

      src        scalar columns of the batch plus per-frame summaries of the cell and probe arrays
                 (min, max, sum): the arrays are read exactly once and never carried further
      limited    pre-dedup row rejects (malformed_vin, unknown_vin, clock_future, before_service),
                 seed range limits (null_field), cross-field rules
      windowed   ONE window pass per (vin, collect_date) in a fixed order: the previous row for
                 de-duplication and +-5 odometer neighbours for the glitch repair
      checked    the single reject reason of a rejected row (first match wins), cleaned values,
                 and `issues`, a list of (field_name, reason_code, action, original_value,
                 corrected_value) for the fields that were nulled or corrected (null when none)

    Performance: one scan of the arrays (list_min/list_max/list_sum), one sort, no join back to
    the wide rows, and issue lists built only for the rare rows that have one (CASE evaluates its
    branch on the matching rows only). Windows never cross a (vin, collect_date) boundary, so a
    day-by-day build equals a full build row for row. -#}
{% macro dws_realtime_cleaning_ctes() -%}
    {%- set limits = get_signal_range_limits() -%}
    {%- set reject_limits = limits | selectattr('action', 'equalto', 'reject_row') | list -%}
    {%- set null_limits = limits | selectattr('action', 'equalto', 'null_field') | list -%}
    {%- set scalar_columns = gbt32960_scalar_columns() -%}
    {%- set tol_future = var('clock_future_tolerance_min', 10) -%}
    {%- set k = var('odometer_window_frames', 5) -%}

src as (
    select
        {% for c in ['vin', 'is_vin_valid', 'cmd', 'collect_time', 'receive_time', 'collect_date'] + scalar_columns -%}
        o.{{ c }},
        {% endfor -%}
        o.battery_fault_codes,
        o.abnormal_fields,
        o.invalid_fields,
        o.source_file,
        o.source_row_number,
        o.row_key,
        -- array summaries computed by ODS from the raw codes (markers excluded)
        cast(o.cell_voltage_min_mv as double) / 1000 as cell_voltage_min_v,
        cast(o.cell_voltage_max_mv as double) / 1000 as cell_voltage_max_v,
        cast(o.cell_voltage_sum_mv as double) / 1000 as cell_voltage_sum_v,
        o.cell_count,
        o.probe_temp_min_c,
        o.probe_temp_max_c,
        v.vin is not null as is_vin_known,
        v.in_service_date
    from {{ ref('ods_gbt32960_realtime') }} as o
    left join {{ ref('dws_vehicle') }} as v on o.vin = v.vin
    where {{ batch_filter('o.collect_date') }}
),

limited as (
    select
        s.*,
        case
            when not s.is_vin_valid then 'malformed_vin'
            when not s.is_vin_known then 'unknown_vin'
            when s.collect_time > {{ dbt.dateadd('minute', tol_future, 's.receive_time') }} then 'clock_future'
            when s.collect_date < s.in_service_date then 'before_service'
        end as pre_reject_reason,
        {% for l in limits -%}
        {{ range_violation_summary('s', l) }} as oor__{{ l['signal'] }},
        {% endfor -%}
        -- a vehicle reported off while moving: the status is the suspect field
        coalesce(s.vehicle_status = 2 and s.speed_kmh > {{ var('speed_with_vehicle_off_kmh', 5) }}, false)
            as is_speed_with_vehicle_off,
        -- charging status while a clear discharge current flows (positive = discharge)
        coalesce(s.charge_status in (1, 2) and s.total_current_a > {{ var('charging_discharge_current_a', 5) }}, false)
            as is_charging_with_discharge_current,
        -- pack voltage against the sum of its cells, only when every cell is known
        coalesce(
            not {{ arr_contains('s.abnormal_fields', "'cell_voltages'") }}
            and not {{ arr_contains('s.invalid_fields', "'cell_voltages'") }}
            and s.cell_count > 0
            and abs(s.total_voltage_v - s.cell_voltage_sum_v)
            > greatest({{ var('pack_voltage_tolerance_v', 5) }}, {{ var('pack_voltage_tolerance_ratio', 0.03) }} * s.cell_voltage_sum_v),
            false
        ) as is_pack_voltage_mismatch
    from src as s
),

row_order as (
    -- the window runs on these narrow columns only and joins back on row_key: sorting the
    -- wide rows would carry ~60 columns through the sort
    select
        l.row_key,
        l.vin,
        l.collect_date,
        l.collect_time,
        l.pre_reject_reason is null as is_candidate,
        l.cmd,
        l.receive_time,
        l.odometer_km
    from limited as l
),

neighbours as (
    select
        r.*,
        row_number() over w as row_in_day,
        lag(r.collect_time) over w as prev_collect_time,
        lag(r.cmd) over w as prev_cmd,
        lag(r.receive_time) over w as prev_receive_time,
        lag(r.odometer_km) over w as odo_lag1,
        lead(r.odometer_km) over w as odo_lead1
    from row_order as r
    -- kept candidates first within a collect_time: cmd 2 before 3, earliest receive time, then
    -- the landing order (row_key orders as source_file, source_row_number: the file list is
    -- sorted; an integer key sorts much faster than the file name)
    window w as (
        partition by r.vin, r.collect_date
        order by r.collect_time, r.is_candidate desc, r.cmd, r.receive_time, r.row_key
    )
),

odometer_steps as (
    -- Odometer glitch repair. The true odometer is monotonic, so it is its own median over
    -- +-k neighbours; a jump or a reset to 0 of up to k frames is not. A step to a neighbour
    -- above the threshold (rare) marks the edge of a glitch; every row within k of an edge is a
    -- candidate (the inner frames of a multi-frame reset have no step of their own) and gets the
    -- median, via small range self-joins.
    select n.vin, n.collect_date, n.row_in_day
    from neighbours as n
    where
        coalesce(abs(n.odometer_km - n.odo_lag1) > {{ var('odometer_glitch_km', 1) }}, false)
        or coalesce(abs(n.odometer_km - n.odo_lead1) > {{ var('odometer_glitch_km', 1) }}, false)
),

odometer_candidates as (
    select distinct n.row_key, n.vin, n.collect_date, n.row_in_day
    from odometer_steps as s
    inner join neighbours as n
        on
            s.vin = n.vin
            and s.collect_date = n.collect_date
            and n.row_in_day between s.row_in_day - {{ k }} and s.row_in_day + {{ k }}
),

odometer_reference as (
    select
        c.row_key,
        median(n.odometer_km) as odometer_ref_km
    from odometer_candidates as c
    inner join neighbours as n
        on
            c.vin = n.vin
            and c.collect_date = n.collect_date
            and n.row_in_day between c.row_in_day - {{ k }} and c.row_in_day + {{ k }}
    group by c.row_key
),

odometer as (
    select
        l.*,
        n.prev_collect_time,
        n.prev_cmd,
        n.prev_receive_time,
        r.odometer_ref_km
    from limited as l
    inner join neighbours as n on l.row_key = n.row_key
    left join odometer_reference as r on l.row_key = r.row_key
),

checked as (
    select
        o.*,
        coalesce(
            o.pre_reject_reason,
            case
                when o.collect_time = o.prev_collect_time and o.cmd = o.prev_cmd and o.receive_time = o.prev_receive_time
                    then 'duplicate'
                when o.collect_time = o.prev_collect_time then 'resend_duplicate'
                {% for l in reject_limits -%}
                when o.oor__{{ l['signal'] }} then 'out_of_range'
                {% endfor -%}
            end
        ) as reject_reason,
        coalesce(abs(o.odometer_km - o.odometer_ref_km) > {{ var('odometer_glitch_km', 1) }}, false)
            as is_odometer_glitch
    from odometer as o
)
{%- endmacro %}

{#- The field issues of a checked row as a list of structs, or null when it has none. -#}
{% macro dws_field_issues(alias) -%}
    {%- set null_limits = get_signal_range_limits('null_field') -%}
    {%- set flags = [
        alias ~ '.is_speed_with_vehicle_off', alias ~ '.is_charging_with_discharge_current',
        alias ~ '.is_pack_voltage_mismatch', alias ~ '.is_odometer_glitch',
        arr_len(alias ~ '.abnormal_fields') ~ ' > 0', arr_len(alias ~ '.invalid_fields') ~ ' > 0'
    ] -%}
    {%- for l in null_limits -%}{%- do flags.append(alias ~ '.oor__' ~ l['signal']) -%}{%- endfor -%}
    {%- set no_text = 'cast(null as ' ~ str_type() ~ ')' -%}
    {%- set rules = [] -%}
    {%- for l in null_limits -%}
        {%- do rules.append((alias ~ '.oor__' ~ l['signal'], "'" ~ l['field_name'] ~ "'", 'out_of_range', 'null_field', range_original_text(alias, l), no_text)) -%}
    {%- endfor -%}
    {%- do rules.append((alias ~ '.is_speed_with_vehicle_off', "'vehicle_status'", 'speed_with_vehicle_off', 'null_field', 'cast(' ~ alias ~ '.vehicle_status as ' ~ str_type() ~ ')', no_text)) -%}
    {%- do rules.append((alias ~ '.is_charging_with_discharge_current', "'charge_status'", 'charging_with_discharge_current', 'null_field', 'cast(' ~ alias ~ '.charge_status as ' ~ str_type() ~ ')', no_text)) -%}
    {%- do rules.append((alias ~ '.is_pack_voltage_mismatch', "'total_voltage'", 'pack_voltage_mismatch', 'null_field', 'cast(' ~ alias ~ '.total_voltage_v as ' ~ str_type() ~ ')', no_text)) -%}
    {%- do rules.append((alias ~ '.is_odometer_glitch', "'odometer'", 'odometer_glitch', 'correct_field', 'cast(' ~ alias ~ '.odometer_km as ' ~ str_type() ~ ')', 'cast(' ~ alias ~ '.odometer_ref_km as ' ~ str_type() ~ ')')) -%}
    {%- set rule_items = [] -%}
    {%- for cond, field, reason, action, original, corrected in rules -%}
        {%- do rule_items.append('case when ' ~ cond ~ ' then ' ~ dws_issue(field, reason, action, original, corrected) ~ ' end') -%}
    {%- endfor -%}
    case when {{ flags | join(' or ') }} then {{ arr_concat(
        arr_concat(
            arr_transform(alias ~ '.abnormal_fields', 'f', dws_issue('f', 'abnormal_marker', 'null_field', gbt32960_marker_text('f', 'abnormal'), no_text)),
            arr_transform(alias ~ '.invalid_fields', 'f', dws_issue('f', 'invalid_marker', 'null_field', gbt32960_marker_text('f', 'invalid'), no_text))
        ),
        arr_filter(arr_literal(rule_items), 'i', 'i is not null')
    ) }} end
{%- endmacro %}

{#- One field issue: (field_name, reason_code, action, original_value, corrected_value). -#}
{% macro dws_issue(field_expr, reason, action, original, corrected) -%}
    {{ struct_literal([('field_name', field_expr), ('reason_code', "'" ~ reason ~ "'"), ('action', "'" ~ action ~ "'"), ('original_value', original), ('corrected_value', corrected)]) }}
{%- endmacro %}

{#- The cleaned value of a decoded scalar column of the cleaning CTE `alias`: null when a seed
    range limit (null_field) or a cross-field rule hits it; the odometer takes its median
    reference when it is a glitch. -#}
{% macro dws_cleaned_scalar(alias, col) -%}
    {%- set cross_field = {
        'vehicle_status': 'is_speed_with_vehicle_off',
        'charge_status': 'is_charging_with_discharge_current',
        'total_voltage_v': 'is_pack_voltage_mismatch'
    } -%}
    {%- set conds = [] -%}
    {%- for l in get_signal_range_limits('null_field') if not l['is_array'] and l['column_name'] == col -%}
        {%- do conds.append(alias ~ '.oor__' ~ l['signal']) -%}
    {%- endfor -%}
    {%- if col in cross_field -%}{%- do conds.append(alias ~ '.' ~ cross_field[col]) -%}{%- endif -%}
    {%- if col == 'odometer_km' -%}
        case when {{ alias }}.is_odometer_glitch then {{ alias }}.odometer_ref_km {% if conds %}when {{ conds | join(' or ') }} then null {% endif %}else {{ alias }}.{{ col }} end
    {%- elif conds -%}
        case when {{ conds | join(' or ') }} then null else {{ alias }}.{{ col }} end
    {%- else -%}
        {{ alias }}.{{ col }}
    {%- endif -%}
{%- endmacro %}

{#- Text of the first violated reject_row limit of a rejected row, for the quarantine. -#}
{% macro dws_reject_range_text(alias, reject_limits) -%}
    case
    {%- for l in reject_limits %}
        when {{ alias }}.oor__{{ l['signal'] }} then '{{ l["column_name"] }}=' || {{ range_original_text(alias, l) }}
    {%- endfor %}
    end
{%- endmacro %}
