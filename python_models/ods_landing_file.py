"""ODS audit of the landing zone: one row per landing file (footers only, never the data)."""

from nev_battery.landing import audit_landing_arrow


def model(dbt, session):
    # landing_root is set in _ods__models.yml from env NEV_LANDING_ROOT / var landing_root.
    dbt.config(materialized="table")
    root = dbt.config.get("landing_root")
    audit = audit_landing_arrow(root)
    if hasattr(session, "createDataFrame"):
        # Spark (Connect): the footers are read where dbt runs, which sees the landing zone
        return session.createDataFrame(audit.to_pandas())
    return audit
