{#- The DWS cleaning of ods_gbt32960_realtime, shared by dws_realtime_frame and dws_quarantine so
    that both always agree. Renders a chain of CTEs (the caller writes `with {{ ... }} select`):

      narrow          scalar row keys of the batch (no list column unless a reject_row limit needs it)
      row_checks      pre-dedup row rejects: malformed_vin, unknown_vin, clock_future, before_service
      ranked          dedup ranking per (vin, collect_date, collect_time)
      decided         duplicate / resend_duplicate, then reject_row range limits -> out_of_range
      kept_rows       kept row keys + odometer reference (median of +-5 kept rows per vin and day)
      rejected_rows   one row per rejected source row, with its single reason (first match wins)
      frame_checked   the single wide projection of the kept rows (lists touched here only):
                      range limits (null_field), cross-field rules, odometer correction, and
                      `issues`, a list of (field_name, reason_code, action, original_value,
                      corrected_value) structs: the quarantine unnests it, the frame lists its fields.

    Windows are partitioned by (vin, collect_date) or narrower, so a day-by-day build equals a
    full build. Thresholds of the cross-field rules are vars with the defaults below. -#}
{% macro dws_realtime_cleaning_ctes() -%}
    {%- set ods = ref('ods_gbt32960_realtime') -%}
    {%- set vehicles = ref('dws_vehicle') -%}
    {%- set limits = get_signal_range_limits() -%}
    {%- set reject_limits = limits | selectattr('action', 'equalto', 'reject_row') | list -%}
    {%- set null_limits = limits | selectattr('action', 'equalto', 'null_field') | list -%}
    {%- set null_by_column = {} -%}
    {%- for l in null_limits -%}{%- do null_by_column.update({l['column_name']: l}) -%}{%- endfor -%}
    {%- set scalar_columns = gbt32960_scalar_columns() -%}
    {%- set narrow_columns = [] -%}
    {%- for l in reject_limits -%}
        {%- if l['column_name'] not in narrow_columns and l['column_name'] != 'odometer_km' -%}
            {%- do narrow_columns.append(l['column_name']) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set odo_limit = null_by_column.get('odometer_km') -%}
    {%- set markers = gbt32960_marker_fields() -%}

narrow as (
    select
        o.source_file,
        o.source_row_number,
        o.vin,
        o.is_vin_valid,
        o.cmd,
        o.collect_time,
        o.receive_time,
        o.collect_date,
        {% for c in narrow_columns -%}
        o.{{ c }},
        {% endfor -%}
        o.odometer_km
    from {{ ods }} as o
    where {{ batch_filter('o.collect_date') }}
),

row_checks as (
    select
        n.*,
        case
            when not n.is_vin_valid then 'malformed_vin'
            when v.vin is null then 'unknown_vin'
            when n.collect_time > {{ dbt.dateadd('minute', var('clock_future_tolerance_min', 10), 'n.receive_time') }}
                then 'clock_future'
            when n.collect_date < v.in_service_date then 'before_service'
        end as pre_reject_reason,
        case
            when not n.is_vin_valid or v.vin is null then n.vin
            when n.collect_time > {{ dbt.dateadd('minute', var('clock_future_tolerance_min', 10), 'n.receive_time') }}
                then cast(n.collect_time as varchar)
            when n.collect_date < v.in_service_date then cast(n.collect_date as varchar)
        end as pre_reject_value
    from narrow as n
    left join {{ vehicles }} as v on n.vin = v.vin
),

ranked as (
    select
        r.*,
        row_number() over (
            partition by r.vin, r.collect_date, r.collect_time
            order by r.cmd, r.receive_time, r.source_file, r.source_row_number
        ) as dup_rank,
        first_value(r.cmd) over (
            partition by r.vin, r.collect_date, r.collect_time
            order by r.cmd, r.receive_time, r.source_file, r.source_row_number
        ) as kept_cmd,
        first_value(r.receive_time) over (
            partition by r.vin, r.collect_date, r.collect_time
            order by r.cmd, r.receive_time, r.source_file, r.source_row_number
        ) as kept_receive_time
    from row_checks as r
    where r.pre_reject_reason is null
),

decided as (
    select
        k.*,
        case
            when k.dup_rank > 1 and k.cmd = k.kept_cmd and k.receive_time = k.kept_receive_time then 'duplicate'
            when k.dup_rank > 1 then 'resend_duplicate'
            {% for l in reject_limits -%}
            when {{ range_violation('k.' ~ l['column_name'], l) }} then 'out_of_range'
            {% endfor -%}
        end as reject_reason,
        case
            when k.dup_rank > 1 then 'cmd=' || cast(k.cmd as varchar) || ' receive_time=' || cast(k.receive_time as varchar)
            {% for l in reject_limits -%}
            when {{ range_violation('k.' ~ l['column_name'], l) }}
                then '{{ l["column_name"] }}=' || cast(k.{{ l['column_name'] }} as varchar)
            {% endfor -%}
        end as reject_value,
        {% if odo_limit -%}
        {{ range_limited('k.odometer_km', odo_limit) }} as odometer_limited_km
        {%- else -%}
        k.odometer_km as odometer_limited_km
        {%- endif %}
    from ranked as k
),

kept_rows as (
    select
        d.source_file,
        d.source_row_number,
        -- Odometer reference: the median of the kept rows within +-5 frames of the same vehicle
        -- and day. The simulator injects single-frame and short-run jumps and resets to 0; a
        -- median over 11 frames ignores runs of up to 5 bad frames, while the true odometer,
        -- being monotonic, is its own window median and is never touched.
        median(d.odometer_limited_km) over (
            partition by d.vin, d.collect_date
            order by d.collect_time
            rows between {{ var('odometer_window_frames', 5) }} preceding and {{ var('odometer_window_frames', 5) }} following
        ) as odometer_ref_km
    from decided as d
    where d.reject_reason is null
),

rejected_rows as (
    select
        r.source_file,
        r.source_row_number,
        r.vin,
        r.collect_time,
        r.collect_date,
        r.pre_reject_reason as reason_code,
        r.pre_reject_value as original_value
    from row_checks as r
    where r.pre_reject_reason is not null
    union all
    select
        d.source_file,
        d.source_row_number,
        d.vin,
        d.collect_time,
        d.collect_date,
        d.reject_reason as reason_code,
        d.reject_value as original_value
    from decided as d
    where d.reject_reason is not null
),

frame_limited as (
    select
        o.source_file,
        o.source_row_number,
        o.vin,
        o.cmd,
        o.collect_time,
        o.receive_time,
        o.collect_date,
        {% for c in scalar_columns -%}
        {% if c in null_by_column -%}
        {{ range_limited('o.' ~ c, null_by_column[c]) }} as {{ c }},
        {{ range_violation('o.' ~ c, null_by_column[c]) }} as oor__{{ c }},
        o.{{ c }} as orig__{{ c }},
        {% else -%}
        o.{{ c }},
        {% endif -%}
        {% endfor -%}
        {% for c in ['cell_voltages_v', 'probe_temps_c'] -%}
        {% if c in null_by_column -%}
        {{ range_limited('o.' ~ c, null_by_column[c]) }} as {{ c }},
        {{ range_violation('o.' ~ c, null_by_column[c]) }} as oor__{{ c }},
        'min=' || cast(list_min(o.{{ c }}) as varchar) || ', max=' || cast(list_max(o.{{ c }}) as varchar) as orig__{{ c }},
        {% else -%}
        o.{{ c }},
        {% endif -%}
        {% endfor -%}
        o.battery_fault_codes,
        o.abnormal_fields,
        o.invalid_fields,
        k.odometer_ref_km
    from {{ ods }} as o
    inner join kept_rows as k
        on o.source_file = k.source_file and o.source_row_number = k.source_row_number
    where {{ batch_filter('o.collect_date') }}
),

frame_rules as (
    select
        f.*,
        -- A vehicle reported off while moving: the status is the suspect field.
        coalesce(f.vehicle_status = 2 and f.speed_kmh > {{ var('speed_with_vehicle_off_kmh', 5) }}, false)
            as is_speed_with_vehicle_off,
        -- Charging status while a clear discharge current flows (positive = discharge).
        coalesce(f.charge_status in (1, 2) and f.total_current_a > {{ var('charging_discharge_current_a', 5) }}, false)
            as is_charging_with_discharge_current,
        -- Pack voltage vs. the sum of its cells, only when every cell is known.
        coalesce(
            len(f.cell_voltages_v) > 0
            and list_count(f.cell_voltages_v) = len(f.cell_voltages_v)
            and abs(f.total_voltage_v - list_sum(f.cell_voltages_v))
            > greatest({{ var('pack_voltage_tolerance_v', 5) }}, {{ var('pack_voltage_tolerance_ratio', 0.03) }} * list_sum(f.cell_voltages_v)),
            false
        ) as is_pack_voltage_mismatch,
        coalesce(abs(f.odometer_km - f.odometer_ref_km) > {{ var('odometer_glitch_km', 1) }}, false) as is_odometer_glitch
    from frame_limited as f
),

frame_checked as (
    select
        r.* exclude (vehicle_status, charge_status, total_voltage_v, odometer_km),
        case when r.is_speed_with_vehicle_off then null else r.vehicle_status end as vehicle_status,
        case when r.is_charging_with_discharge_current then null else r.charge_status end as charge_status,
        case when r.is_pack_voltage_mismatch then null else r.total_voltage_v end as total_voltage_v,
        case when r.is_odometer_glitch then r.odometer_ref_km else r.odometer_km end as odometer_km,
        list_concat(
            list_transform(
                r.abnormal_fields,
                lambda f: {'field_name': f, 'reason_code': 'abnormal_marker', 'action': 'null_field',
                    'original_value': {{ gbt32960_marker_text('f', 'abnormal') }}, 'corrected_value': cast(null as varchar)}
            ),
            list_transform(
                r.invalid_fields,
                lambda f: {'field_name': f, 'reason_code': 'invalid_marker', 'action': 'null_field',
                    'original_value': {{ gbt32960_marker_text('f', 'invalid') }}, 'corrected_value': cast(null as varchar)}
            ),
            list_filter([
                {% for c in scalar_columns + ['cell_voltages_v', 'probe_temps_c'] if c in null_by_column -%}
                case when r.oor__{{ c }} then {
                    'field_name': '{{ null_by_column[c]["field_name"] }}', 'reason_code': 'out_of_range', 'action': 'null_field',
                    'original_value': cast(r.orig__{{ c }} as varchar),
                    'corrected_value': cast(null as varchar)
                } end,
                {% endfor -%}
                case when r.is_speed_with_vehicle_off then {
                    'field_name': 'vehicle_status', 'reason_code': 'speed_with_vehicle_off', 'action': 'null_field',
                    'original_value': cast(r.vehicle_status as varchar), 'corrected_value': cast(null as varchar)
                } end,
                case when r.is_charging_with_discharge_current then {
                    'field_name': 'charge_status', 'reason_code': 'charging_with_discharge_current', 'action': 'null_field',
                    'original_value': cast(r.charge_status as varchar), 'corrected_value': cast(null as varchar)
                } end,
                case when r.is_pack_voltage_mismatch then {
                    'field_name': 'total_voltage', 'reason_code': 'pack_voltage_mismatch', 'action': 'null_field',
                    'original_value': cast(r.total_voltage_v as varchar), 'corrected_value': cast(null as varchar)
                } end,
                case when r.is_odometer_glitch then {
                    'field_name': 'odometer', 'reason_code': 'odometer_glitch', 'action': 'correct_field',
                    'original_value': cast(r.odometer_km as varchar), 'corrected_value': cast(r.odometer_ref_km as varchar)
                } end
            ], lambda i: i is not null)
        ) as issues
    from frame_rules as r
)
{%- endmacro %}
