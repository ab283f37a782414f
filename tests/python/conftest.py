"""Shared fixtures: one small simulated fleet per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from nev_battery.simulate import SimConfig, simulate

# 12 vehicles x 8 days with a high fault share, so every fault type and a thermal event appear
SMALL_FLEET = SimConfig(vehicles=12, days=8, seed=11, fault_share=0.45)


@pytest.fixture(scope="session")
def small_fleet(tmp_path_factory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("fleet")
    res = simulate(SMALL_FLEET, root / "landing", root / "truth")
    return root / "landing", root / "truth", res


# --- a real MySQL/MariaDB server for the rules tests ------------------------------------------

MYSQL_URL_ENV = "NEV_TEST_MYSQL_URL"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """The server's URL (NEV_TEST_MYSQL_URL, default root on 127.0.0.1:3306): the tests create a
    database of their own there and drop it. Unreachable: a failure in CI (CI=true), a skip
    saying how to point the tests at a server elsewhere."""
    import os

    import pymysql

    from nev_battery.rules import connect_mysql

    url = os.environ.get(MYSQL_URL_ENV, DEFAULT_MYSQL_URL)
    try:
        connect_mysql(url).close()
    except Exception as e:  # noqa: BLE001 - any failure to reach the server
        msg = (f"no MySQL/MariaDB server at {url} ({e}); set {MYSQL_URL_ENV}="
               "mysql://user:password@host:port/database to a server where the tests may create "
               "and drop a database of their own")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    assert pymysql  # the driver the rules module uses
    return url


@pytest.fixture
def rules_db(mysql_server):
    """A database of its own on the server (unique name), dropped afterwards; yields its URL."""
    import uuid
    from urllib.parse import urlparse

    from nev_battery.rules import connect_mysql

    name = f"nev_rules_test_{uuid.uuid4().hex[:12]}"
    con = connect_mysql(mysql_server)
    with con.cursor() as cur:
        cur.execute(f"create database `{name}`")
    con.close()
    u = urlparse(mysql_server)
    yield u._replace(path=f"/{name}").geturl()
    con = connect_mysql(mysql_server)
    with con.cursor() as cur:
        cur.execute(f"drop database if exists `{name}`")
    con.close()


# --- a Kafka-protocol broker (Tansu) and the simulator's direct landing, for the ingest tests --


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    from kafka_fixture import start_broker

    yield from start_broker(tmp_path_factory)


@pytest.fixture(scope="module")
def direct(tmp_path_factory) -> Path:
    from kafka_fixture import direct_landing

    return direct_landing(tmp_path_factory)
