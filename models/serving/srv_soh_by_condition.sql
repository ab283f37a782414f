{{ config(
    alias='soh_by_condition',
    materialized='table',
    order_by='(scope, scope_key, condition_type, condition_value)',
) }}
-- ads_soh_by_condition (no date: labels over the whole history), replaced whole on every publish
select
    cast(scope as varchar) as scope,
    cast(scope_key as varchar) as scope_key,
    cast(condition_type as varchar) as condition_type,
    cast(condition_value as varchar) as condition_value,
    * except (scope, scope_key, condition_type, condition_value)
from {{ lake_table('ads_soh_by_condition', partitioned=false) }}
