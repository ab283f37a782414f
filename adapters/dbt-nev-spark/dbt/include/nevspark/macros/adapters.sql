{#- nevspark inherits every dbt-spark macro; nothing is overridden yet. -#}
