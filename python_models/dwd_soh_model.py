"""DWD SOH model registry: trains nev_battery.soh on the capacity observations, one row per
model version (the fitted model as a base64 artifact, its training and grouped cross-validation
metrics). Appends a version only when asked to train (var soh_retrain: auto = when none exists,
true = now, false = never), so a daily run applies the stored model without retraining."""

from nev_battery.soh import (
    FEATURE_COLUMNS,
    OBSERVATION_COLUMNS,
    SohSettings,
    model_frame,
    spark_registry_schema,
    train,
)


def model(dbt, session):
    # strategy and partitioning per target: dbt_project.yml (materialized must be set here)
    dbt.config(materialized="incremental")
    settings = SohSettings(
        holdout_share=float(dbt.config.get("soh_holdout_share")),
        min_training_vehicles=int(dbt.config.get("soh_min_training_vehicles")),
        min_training_observations=int(dbt.config.get("soh_min_training_observations")),
    )
    retrain = str(dbt.config.get("soh_retrain")).strip().lower()
    spark = hasattr(session, "createDataFrame")
    if not spark:
        session.complete()

    def count(rel):
        if spark:
            return session.table(str(rel)).count()
        return session.sql(f"select count(*) from {rel}").fetchall()[0][0]

    stored = count(dbt.this) if dbt.is_incremental else 0
    has_model = stored > 0
    fitted = None
    if retrain == "true" or (retrain == "auto" and not has_model):
        obs = dbt.ref("dwd_capacity_observation")
        features = dbt.ref("dwd_vehicle_soh_feature")
        cols = ", ".join([f"o.{c}" for c in OBSERVATION_COLUMNS]
                         + [f"f.{c}" for c in FEATURE_COLUMNS])
        # the observations used for training: valid labels with their own day's features
        query = (f"select {cols} from OBSERVATIONS as o inner join FEATURES as f "
                 "on o.vin = f.vin and o.start_date = f.date "
                 "where o.capacity_reject_reason is null")
        if spark:
            obs.createOrReplaceTempView("soh_obs")
            features.createOrReplaceTempView("soh_features")
            data = session.sql(query.replace("OBSERVATIONS", "soh_obs")
                               .replace("FEATURES", "soh_features")).toPandas()
            last = features.agg({"date": "max"}).collect()[0][0]
        else:
            data = session.sql(query.replace("OBSERVATIONS", f"({obs.sql_query()})")
                               .replace("FEATURES", f"({features.sql_query()})")).df()
            last = session.sql(f"select max(date) from ({features.sql_query()})").fetchall()[0][0]
        if last is not None and len(data):
            fitted = train(data, settings, trained_through=str(last))
        # the version names the training data's last day and a hash of the fitted model: a
        # retrain on the same data reproduces it, and it is stored once
        if fitted is not None and has_model:
            known = f"select count(*) from {dbt.this} where model_version = '{fitted.version}'"
            n_known = (session.sql(known).collect()[0][0] if spark
                       else session.sql(known).fetchall()[0][0])
            if n_known:
                fitted = None
    out = model_frame(fitted, version_number=stored + 1)
    if spark:
        return session.createDataFrame(out, schema=spark_registry_schema())
    return session.from_df(out)
