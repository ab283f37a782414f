"""simulate → Kafka → ingest → landing against a real Kafka-protocol broker (Tansu): the round
trip lands the same raw codes as the simulator writing the landing zone directly, and
re-consuming the topic rewrites the same files."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kafka_fixture import direct_landing, files_digest, landed, same_rows, start_broker

from nev_battery import cli
from nev_battery.ingest import SESSION_TABLE, IngestConfig, ingest
from nev_battery.landing import audit_landing


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    yield from start_broker(tmp_path_factory)


@pytest.fixture(scope="module")
def direct(tmp_path_factory) -> Path:
    return direct_landing(tmp_path_factory)


def test_simulate_to_kafka_round_trip(broker, direct, tmp_path, monkeypatch):
    """nev-battery simulate --to-kafka, then nev-battery ingest: the same rows, column by column,
    as the simulator writing the landing zone (same seed); a clean audit; sessions landed."""
    out = tmp_path / "landing"
    assert cli.main(["simulate", "--vehicles", "3", "--days", "1", "--seed", "5", "--out",
                     str(out), "--truth", str(tmp_path / "truth"), "--to-kafka",
                     "--kafka-bootstrap", broker, "--topic", "rt", "--partitions", "3"]) == 0
    assert not (out / "gbt32960_realtime").exists()
    assert (out / "vehicle_master" / "vehicle_master.parquet").exists()
    monkeypatch.setenv("NEV_KAFKA_BOOTSTRAP", broker)
    assert cli.main(["ingest", "--topic", "rt", "--group", "g-rt", "--landing", str(out),
                     "--idle-exit", "1.5", "--session-timeout-ms", "6000",
                     "--roll-messages", "300"]) == 0
    same_rows(landed(out), landed(direct))
    audit = audit_landing(out)
    assert audit.is_valid.all() and audit.error_code.isna().all(), audit[~audit.is_valid]
    sessions = pa.concat_tables([pq.read_table(f) for f in
                                 (out / SESSION_TABLE).glob("dt=*/*.parquet")])
    assert sorted(sessions.column("event").to_pylist()) == ["login"] * 3 + ["logout"] * 3
    for f in (out / "gbt32960_realtime").rglob("*.parquet"):  # dt = the collect date
        days = pq.read_table(f, columns=["collect_time"]).column(0).to_numpy()
        assert (days.astype("datetime64[D]").astype(str) == f.parent.name[3:]).all(), f
    names = [p.name for p in (out / "gbt32960_realtime").rglob("*.parquet")]
    assert all(n.startswith("part-rt-") for n in names)

    # a second consumer group reads the topic again from offset 0 into the same landing zone:
    # the landed files give it the cut points, every file is rewritten identically
    before = files_digest(out)
    st = ingest(IngestConfig(bootstrap=broker, landing=out, topic="rt", group="g-again",
                             roll_messages=300, idle_exit=1.5, session_timeout_ms=6000))
    assert st.messages > 0 and st.files == len([k for k in before if "vehicle_master" not in k])
    assert files_digest(out) == before
    same_rows(landed(out), landed(direct))
