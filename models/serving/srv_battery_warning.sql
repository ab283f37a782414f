{{ config(
    alias='battery_warning',
    partition_by='toYYYYMM(start_time)',
    order_by='(vin, start_time, warning_id)',
    ttl=serving_ttl('toDate(start_time)'),
) }}
-- ads_battery_warning as exported to the lake (by month of start_time): a warning belongs to
-- the month it started in; keys cast to non-null types (sort key)
select
    cast(vin as varchar) as vin,
    cast(start_time as datetime64(6)) as start_time,
    cast(warning_id as varchar) as warning_id,
    * except (vin, start_time, warning_id, month)
from {{ lake_table('ads_battery_warning') }}
