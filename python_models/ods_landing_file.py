"""ODS audit of the landing zone: one row per landing file (footers only, never the data)."""

import json

from nev_battery.landing import audit_landing_arrow


def model(dbt, session):
    # landing_root and landing_quarantine are set in _ods__models.yml from env NEV_LANDING_ROOT /
    # var landing_root and var landing_quarantine: {file: message} of the files whose data pages
    # failed to decode (nev_battery.warehouse.build finds them), marked corrupt_data here so that
    # ODS reads around them
    dbt.config(materialized="table")
    root = dbt.config.get("landing_root")
    # (a call of its own: dbt finds the config keys a Python model reads by parsing such calls)
    quarantine = dbt.config.get("landing_quarantine")
    quarantine = json.loads(quarantine) if quarantine else {}
    audit = audit_landing_arrow(root, quarantine)
    if hasattr(session, "createDataFrame"):
        # Spark (Connect): the footers are read where dbt runs, which sees the landing zone
        return session.createDataFrame(audit.to_pandas())
    return audit
