"""DWD daily SOH per vehicle: applies the stored SOH model (dwd_soh_model; the latest version
or var soh_model_version) to every vehicle-day of dwd_vehicle_soh_feature, with the vehicle's
capacity observations up to that day. Never trains.

Incremental like dwd_vehicle_soh_feature: rebuilds from the first day dwd_vehicle_lifetime
rebuilds (nev_battery.dwd_window mirrors macros/dwd_window.sql). On DuckDB vehicle-chunk by
vehicle-chunk; on Spark distributed per vehicle (features cogrouped with observations).
"""

import pandas as pd

from nev_battery.dwd_window import dwd_window, parse_batch_dates
from nev_battery.soh import (
    FEATURE_COLUMNS,
    OBSERVATION_COLUMNS,
    OUTPUT_COLUMNS,
    SohSettings,
    apply,
    empty_output,
    loads,
    spark_output_schema,
)

# vehicle-days per chunk: bounds the pandas working set whatever the fleet size
CHUNK_ROWS = 1_000_000


def model(dbt, session):
    # strategy and partitioning per target: dbt_project.yml (materialized must be set here)
    dbt.config(materialized="incremental")
    settings = SohSettings(rolling_median_n=int(dbt.config.get("soh_rolling_median_n")),
                           systematic_sd_pp=float(dbt.config.get("soh_systematic_sd_pp")),
                           dispersion_prior_n=float(dbt.config.get("soh_dispersion_prior_n")))
    pinned = str(dbt.config.get("soh_model_version")).strip()
    batch = parse_batch_dates(dbt.config.get("batch_dates"))
    window = dwd_window(batch if dbt.is_incremental else [],
                        int(dbt.config.get("dwd_lookback_days")))
    start = None if window.is_everything else window.rebuild[0]
    spark = hasattr(session, "createDataFrame")
    if not spark:
        session.complete()

    registry = dbt.ref("dwd_soh_model")
    where = "" if pinned in ("", "latest", "None") else f"where model_version = '{pinned}'"
    pick = (f"select model_version, artifact from REGISTRY {where} "
            "order by version_number desc limit 1")
    if spark:
        registry.createOrReplaceTempView("soh_registry")
        rows = session.sql(pick.replace("REGISTRY", "soh_registry")).collect()
    else:
        rows = session.sql(pick.replace("REGISTRY", f"({registry.sql_query()})")).fetchall()
    if not rows:
        if pinned not in ("", "latest", "None"):
            raise ValueError(f"dwd_vehicle_soh: model version {pinned!r} not in dwd_soh_model")
        # no model trained yet (too few observations): no SOH rows until one is
        fitted = None
    else:
        fitted = loads(rows[0][1])

    feature_cols = ["vin", "date", "rated_capacity_ah", *FEATURE_COLUMNS]
    # the features aliased (new attributes of the join's output): on Spark, the features table's
    # own attributes on both sides of the cogroup lose the observation side's feature columns
    # when the result is written into the date-partitioned table
    obs_cols = ([f"o.{c}" for c in OBSERVATION_COLUMNS]
                + [f"f.{c} as {c}" for c in FEATURE_COLUMNS])
    if spark:
        return _spark(dbt, session, fitted, settings, start, feature_cols, obs_cols)
    return _duckdb(dbt, session, fitted, settings, start, feature_cols, obs_cols)


def _duckdb(dbt, session, fitted, settings, start, feature_cols, obs_cols):
    if fitted is None:
        # typed from the Spark schema: an empty pandas frame's date columns have no type, and
        # DuckDB would store them as NULL-typed columns the ADS models cannot use
        types = [col.split(" ", 1) for col in spark_output_schema().split(", ")]
        cols = ", ".join(f"cast(null as {'varchar' if t == 'string' else t}) as {c}"
                         for c, t in types)
        return session.sql(f"select {cols} where false")
    features_sql = dbt.ref("dwd_vehicle_soh_feature").sql_query()
    obs_sql = dbt.ref("dwd_capacity_observation").sql_query()
    since = f"date >= cast('{start}' as date)" if start else "1 = 1"
    (n_rows,) = session.sql(f"select count(*) from ({features_sql}) where {since}").fetchall()[0]
    n_chunks = max(1, -(-n_rows // CHUNK_ROWS))
    parts = []
    for k in range(n_chunks):
        chunk = f"hash(vin) % {n_chunks} = {k}"
        feats = session.sql(
            f"select {', '.join(feature_cols)} from ({features_sql}) "
            f"where {since} and {chunk}").df()
        obs = session.sql(
            f"select {', '.join(obs_cols)} from ({obs_sql}) as o "
            f"inner join ({features_sql}) as f on o.vin = f.vin and o.start_date = f.date "
            f"where o.capacity_reject_reason is null and hash(o.vin) % {n_chunks} = {k}").df()
        parts.append(apply(fitted, feats, obs, settings))
    out = pd.concat(parts, ignore_index=True).sort_values(["vin", "date"], ignore_index=True)
    return session.from_df(out)


def _spark(dbt, session, fitted, settings, start, feature_cols, obs_cols):
    from pyspark.sql import functions as F

    if fitted is None:
        return session.createDataFrame(empty_output(), schema=spark_output_schema())
    features = dbt.ref("dwd_vehicle_soh_feature")
    obs = dbt.ref("dwd_capacity_observation")
    features.createOrReplaceTempView("soh_features")
    obs.createOrReplaceTempView("soh_obs")
    obs_with_features = session.sql(
        f"select {', '.join(obs_cols)} from soh_obs as o inner join soh_features as f "
        "on o.vin = f.vin and o.start_date = f.date where o.capacity_reject_reason is null")
    todo = features.select(*feature_cols)
    if start:
        todo = todo.where(F.col("date") >= F.lit(start.isoformat()))

    def per_vehicle(feats: pd.DataFrame, obs_v: pd.DataFrame) -> pd.DataFrame:
        if feats.empty:
            return empty_output()
        return apply(fitted, feats, obs_v, settings)

    return (todo.groupBy("vin").cogroup(obs_with_features.groupBy("vin"))
            .applyInPandas(per_vehicle, schema=spark_output_schema())
            .select(*OUTPUT_COLUMNS))
