"""Imports the BI bundle into Superset: run by the BI virtualenv's Python (nev_battery.bi.provision),
with SUPERSET_CONFIG_PATH set; it imports nothing of nev_battery (not installed there).

    python superset_provision.py <bundle.zip> <username>

Databases, datasets, charts and dashboards are each imported with overwrite (Superset's
dashboard import alone keeps the charts and datasets it finds), then every dataset's columns are
read from its database (the bundle lists none: they are the ADS contracts')."""

from __future__ import annotations

import sys
import zipfile

import yaml

TYPES = (("databases/", "Database"), ("datasets/", "SqlaTable"), ("charts/", "Slice"),
         ("dashboards/", "Dashboard"))


def main(path: str, username: str) -> int:
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from flask import g
        from superset import db, security_manager
        from superset.commands.chart.importers.v1 import ImportChartsCommand
        from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
        from superset.commands.database.importers.v1 import ImportDatabasesCommand
        from superset.commands.dataset.importers.v1 import ImportDatasetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.connectors.sqla.models import SqlaTable

        g.user = security_manager.find_user(username=username)
        with zipfile.ZipFile(path) as z:
            contents = get_contents_from_bundle(z)
        commands = (ImportDatabasesCommand, ImportDatasetsCommand, ImportChartsCommand,
                    ImportDashboardsCommand)
        for (prefix, model), command in zip(TYPES, commands, strict=True):
            if prefix == "datasets/":
                repoint(contents)
            meta = yaml.safe_dump({"version": "1.0.0", "type": model,
                                   "timestamp": "2026-01-01T00:00:00+00:00"})
            files = {k: v for k, v in contents.items() if k != "metadata.yaml"}
            command({**files, "metadata.yaml": meta}, overwrite=True).run()
            print(f"imported {sum(k.startswith(prefix) for k in files)} {prefix.rstrip('/')}")
        uuids = {yaml.safe_load(v)["uuid"] for k, v in contents.items()
                 if k.startswith("datasets/")}
        for ds in db.session.query(SqlaTable).all():
            if str(ds.uuid) in uuids:
                ds.fetch_metadata()
        db.session.commit()
        print(f"read the columns of {len(uuids)} datasets")
    return 0


def repoint(contents: dict[str, str]) -> None:
    """A dataset that now reads another database or table (bi up --source changed): moved there
    in place before the import. Superset's import finds a dataset by (database, schema, table),
    so it would insert a second one with the same UUID and fail."""
    import uuid

    from superset import db
    from superset.connectors.sqla.models import SqlaTable
    from superset.models.core import Database

    for name, text in contents.items():
        if not name.startswith("datasets/"):
            continue
        cfg = yaml.safe_load(text)
        ds = db.session.query(SqlaTable).filter_by(uuid=uuid.UUID(cfg["uuid"])).one_or_none()
        target = db.session.query(Database).filter_by(
            uuid=uuid.UUID(cfg["database_uuid"])).one_or_none()
        if ds is None or target is None:
            continue
        if (ds.database_id, ds.schema, ds.table_name) != (target.id, cfg["schema"],
                                                          cfg["table_name"]):
            ds.database_id, ds.schema = target.id, cfg["schema"]
            ds.table_name, ds.sql = cfg["table_name"], cfg["sql"]
    db.session.commit()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
