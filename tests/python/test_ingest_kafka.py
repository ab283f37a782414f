"""simulate → Kafka → ingest → landing against a real Kafka-protocol broker (Tansu): the round
trip lands the same raw codes as the simulator writing the landing zone directly, and
re-consuming the topic rewrites the same files."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from kafka_fixture import files_digest, landed, same_rows

from nev_battery import cli
from nev_battery.ingest import SESSION_TABLE, IngestConfig, ingest, online_sessions
from nev_battery.landing import audit_landing


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
    online = online_sessions(out).to_pylist()
    assert len(online) == 3 and all(r["login_time"] < r["logout_time"] for r in online)
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


def test_two_consumers_share_the_partitions(broker, direct, tmp_path):
    """Two ingest jobs in one group (4 partitions; the second joins while the first runs: a
    rebalance), stopped by SIGTERM once every row is landed: the direct landing, exactly."""
    import os
    import re
    import signal
    import subprocess
    import time

    from nev_battery.ingest import ensure_topic, produce, realtime_frames

    frames, keys, ts = realtime_frames(direct)
    ensure_topic(broker, "shared", 4)
    half = len(frames) // 3
    produce(broker, "shared", frames[:half], keys[:half], ts[:half])
    out = tmp_path / "landing"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    cmd = [sys.executable, "-m", "nev_battery.cli", "ingest", "--bootstrap", broker, "--topic",
           "shared", "--group", "g-shared", "--landing", str(out), "--roll-messages", "50",
           "--roll-seconds", "0.5", "--session-timeout-ms", "3000"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    time.sleep(1.0)
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT))
    time.sleep(5.0)  # the second has joined: the rest is shared between them
    produce(broker, "shared", frames[half:], keys[half:], ts[half:])
    want = landed(direct).num_rows
    deadline = time.monotonic() + 60
    try:
        while sum(pq.read_metadata(f).num_rows
                  for f in out.glob("gbt32960_realtime/dt=*/*.parquet")) < want:
            assert all(p.poll() is None for p in procs)
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=30)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    got = [int(re.search(r"ingested ([\d,]+) messages", o)[1].replace(",", "")) for o in outs]
    assert min(got) > 0 and sum(got) >= len(frames), outs
    same_rows(landed(out), landed(direct))
