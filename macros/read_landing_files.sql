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
        {{ empty_landing_select(table_name) }}
    {%- endif -%}
{%- endmacro %}

{#- Spark: parquet scans of the valid files only, so that a corrupt or mis-typed file is never
    opened: one scan per partition directory whose files are all valid, one per file elsewhere.
    `_metadata` (Spark >= 3.3; row_index >= 4.0) gives the file and row; the row key is the
    file's position in the valid-file list and its row, as on DuckDB. -#}
{% macro default__read_landing_files(table_name) -%}
    {%- set columns = landing_contract_columns(table_name) -%}
    {%- set files = valid_landing_files(table_name) -%}
    {%- set root = landing_root() -%}
    {%- set partitioned = table_name == 'gbt32960_realtime' -%}
    {%- set all_files = all_landing_files(table_name) -%}
    {%- set scans = [] -%}
    {%- set dirs = {} -%}
    {%- for f in files -%}
        {%- set d = f.rsplit('/', 1)[0] -%}
        {%- do dirs.setdefault(d, []).append(f) -%}
    {%- endfor -%}
    {%- for d, fs in dirs.items() -%}
        {%- if fs | length == all_files.get(d, []) | length -%}
            {%- do scans.append(d) -%}
        {%- else -%}
            {%- for f in fs %}{% do scans.append(f) %}{% endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if scans | length > 0 -%}
        select
            {% for name, type in columns -%}
            cast(`{{ name }}` as {{ spark_type(type) }}) as {{ name }},
            {% endfor -%}
            {% if partitioned -%}
            cast(regexp_extract(_file_path, '/dt=([0-9]{4}-[0-9]{2}-[0-9]{2})/', 1) as date) as collect_date,
            {% endif -%}
            substr(_file_path, instr(_file_path, '/{{ table_name }}/') + 1) as source_file,
            cast(_row_index as bigint) as source_row_number,
            -- the file's position in the valid-file list, as on DuckDB (directory scans do not
            -- know it: a join with the list, known when the model compiles)
            fi.file_index * 4294967296 + _row_index as row_key
        from (
            {%- for p in scans %}
            {% if not loop.first %}union all {% endif %}select
                {% for name, type in columns %}`{{ name }}`, {% endfor %}_metadata.file_path as _file_path,
                _metadata.row_index as _row_index
            from parquet.`{{ root ~ '/' ~ p }}`
            {%- endfor %}
        ) as landing
        inner join (
            values
            {%- for f in files %}
                ('{{ f }}', cast({{ loop.index0 }} as bigint)){% if not loop.last %},{% endif %}
            {%- endfor %}
        ) as fi (file_path, file_index)
            on substr(landing._file_path, instr(landing._file_path, '/{{ table_name }}/') + 1) = fi.file_path
    {%- else -%}
        {{ empty_landing_select(table_name) }}
    {%- endif -%}
{%- endmacro %}

{#- No valid file: an empty relation with the same typed columns (contract types in the target's
    spelling). -#}
{% macro empty_landing_select(table_name) -%}
    {%- set spark = target.type in ('spark', 'nevspark') -%}
    select
        {% for name, type in landing_contract_columns(table_name) -%}
        cast(null as {{ spark_type(type) if spark else type }}) as {{ name }},
        {% endfor -%}
        {% if table_name == 'gbt32960_realtime' -%}
        cast(null as date) as collect_date,
        {% endif -%}
        cast(null as {{ str_type() }}) as source_file,
        cast(null as bigint) as source_row_number,
        cast(null as bigint) as row_key
    where 1 = 0
{%- endmacro %}

{#- {directory: [files]} of all audited landing files of a table (valid or not), by the folder a
    directory scan would read (the dt= partition, or vehicle_master/): a stray file anywhere in
    it (unexpected_path, even in a sub-folder) makes the folder be read file by file. -#}
{% macro all_landing_files(table_name) -%}
    {%- set audit = ref('ods_landing_file') -%}
    {%- set out = {} -%}
    {%- if not execute -%}
        {{ return(out) }}
    {%- endif -%}
    {%- set depth = 2 if table_name == 'gbt32960_realtime' else 1 -%}
    {%- set query -%}
        select file_path from {{ audit }}
        where table_name = '{{ table_name }}' and error_code is distinct from 'empty_partition'
    {%- endset -%}
    {%- for f in run_query(query).columns[0].values() -%}
        {%- do out.setdefault(f.split('/')[:depth] | join('/'), []).append(f) -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{#- DuckDB type names of the contract as Spark SQL types. -#}
{% macro spark_type(duckdb_type) -%}
    {%- set base = duckdb_type.replace('[]', '') -%}
    {%- set t = {'varchar': 'string', 'integer': 'int', 'bigint': 'bigint', 'double': 'double',
                 'boolean': 'boolean', 'date': 'date', 'timestamp': 'timestamp'}[base] -%}
    {%- if duckdb_type.endswith('[]') -%}array<{{ t }}>{%- else -%}{{ t }}{%- endif -%}
{%- endmacro %}
