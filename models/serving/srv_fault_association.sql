{{ config(
    alias='fault_association',
    materialized='table',
    order_by='(transaction_type, antecedent, consequent)',
) }}
-- ads_fault_association (no date: rules over the whole history), replaced whole on every publish
select
    cast(transaction_type as varchar) as transaction_type,
    cast(antecedent as varchar) as antecedent,
    cast(consequent as varchar) as consequent,
    * except (transaction_type, antecedent, consequent)
from {{ lake_table('ads_fault_association', partitioned=false) }}
