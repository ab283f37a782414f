{#- Contract columns of the landing tables (landing.md §1.1 and §1.3), DuckDB types. -#}
{% macro landing_contract_columns(table_name) -%}
    {%- set realtime = [
        ('vin', 'varchar'), ('cmd', 'integer'),
        ('collect_time', 'timestamp'), ('receive_time', 'timestamp'),
        ('vehicle_status', 'integer'), ('charge_status', 'integer'), ('run_mode', 'integer'),
        ('speed', 'integer'), ('odometer', 'bigint'), ('total_voltage', 'integer'),
        ('total_current', 'integer'), ('soc', 'integer'), ('dcdc_status', 'integer'),
        ('gear', 'integer'), ('insulation_resistance', 'integer'),
        ('accel_pedal', 'integer'), ('brake_pedal', 'integer'),
        ('max_volt_subsys', 'integer'), ('max_volt_cell_no', 'integer'), ('max_cell_voltage', 'integer'),
        ('min_volt_subsys', 'integer'), ('min_volt_cell_no', 'integer'), ('min_cell_voltage', 'integer'),
        ('max_temp_subsys', 'integer'), ('max_temp_probe_no', 'integer'), ('max_temp', 'integer'),
        ('min_temp_subsys', 'integer'), ('min_temp_probe_no', 'integer'), ('min_temp', 'integer'),
        ('max_alarm_level', 'integer'), ('general_alarm_flags', 'bigint'),
        ('battery_fault_codes', 'bigint[]'), ('cell_voltages', 'integer[]'), ('probe_temps', 'integer[]')
    ] -%}
    {%- set master = [
        ('vin', 'varchar'), ('vehicle_model', 'varchar'), ('chemistry', 'varchar'),
        ('rated_capacity_ah', 'double'), ('rated_energy_kwh', 'double'),
        ('cells_in_series', 'integer'), ('temp_probes', 'integer'),
        ('current_discharge_positive', 'boolean'), ('in_service_date', 'date'),
        ('usage_type', 'varchar'), ('region', 'varchar')
    ] -%}
    {{ return({'gbt32960_realtime': realtime, 'vehicle_master': master}[table_name]) }}
{%- endmacro %}

{#- Relative paths of the landing files of a table that ods_landing_file marks valid and
    non-empty. Empty list at parse time or before ods_landing_file exists. -#}
{% macro valid_landing_files(table_name) -%}
    {%- set audit = ref('ods_landing_file') -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set rel = adapter.get_relation(database=audit.database, schema=audit.schema, identifier=audit.identifier) -%}
    {%- if rel is none -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select file_path
        from {{ rel }}
        where table_name = '{{ table_name }}' and is_valid and row_count > 0
        order by file_path
    {%- endset -%}
    {{ return(run_query(query).columns[0].values() | list) }}
{%- endmacro %}

{#- Reads the valid landing files of a table (see valid_landing_files) with the contract
    columns plus source_file (path relative to the landing root), source_row_number (0-based
    row in the file) and, for the partitioned realtime table, collect_date (from dt=).
    When no file is valid, an empty relation with the same typed columns.
    Why not the source glob: a corrupt file must neither fail the build nor vanish silently;
    ods_landing_file reports it and this reads around it. -#}
{% macro read_landing_files(table_name) -%}
    {{ return(adapter.dispatch('read_landing_files', 'nev_battery')(table_name)) }}
{%- endmacro %}

{% macro duckdb__read_landing_files(table_name) -%}
    {%- set columns = landing_contract_columns(table_name) -%}
    {%- set files = valid_landing_files(table_name) -%}
    {%- set root = landing_root() -%}
    {%- set partitioned = table_name == 'gbt32960_realtime' -%}
    {%- if files | length > 0 -%}
        select
            {% for name, type in columns -%}
            cast({{ name }} as {{ type }}) as {{ name }},
            {% endfor -%}
            {% if partitioned -%}
            cast(dt as date) as collect_date,
            {% endif -%}
            substr(filename, {{ root | length + 2 }}) as source_file,
            cast(file_row_number as bigint) as source_row_number,
            -- a single-integer row key, valid inside one query only (file_index is the file's
            -- position in this run's file list): joins within a model use it instead of the
            -- (source_file, source_row_number) pair
            cast(file_index as bigint) * 4294967296 + file_row_number as row_key
        from read_parquet(
            [{% for f in files %}'{{ (root ~ '/' ~ f) | replace("'", "''") }}'{% if not loop.last %}, {% endif %}{% endfor %}],
            hive_partitioning = {{ 'true' if partitioned else 'false' }},
            {% if partitioned -%}
            hive_types = {'dt': date},
            {% endif -%}
            filename = true,
            file_row_number = true,
            union_by_name = true
        )
    {%- else -%}
        select
            {% for name, type in columns -%}
            cast(null as {{ type }}) as {{ name }},
            {% endfor -%}
            {% if partitioned -%}
            cast(null as date) as collect_date,
            {% endif -%}
            cast(null as varchar) as source_file,
            cast(null as bigint) as source_row_number,
            cast(null as bigint) as row_key
        where 1 = 0
    {%- endif -%}
{%- endmacro %}

{% macro default__read_landing_files(table_name) -%}
    {{ exceptions.raise_compiler_error("read_landing_files is implemented for duckdb only (Spark/ClickHouse targets: todo)") }}
{%- endmacro %}
