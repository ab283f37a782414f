"""A kill -9 of `nev-battery ingest` mid-way, twice, then a restart: nothing lost, nothing landed
twice (the landed rows compared column by column with the simulator's direct landing); bad
frames kept in gbt32960_rejected with their Kafka coordinates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from kafka_fixture import landed, same_rows

from nev_battery.gbt32960 import REJECTED_SCHEMA, bcc
from nev_battery.ingest import (
    _HOST,
    REJECTED_TABLE,
    TMP_DIR,
    ensure_topic,
    produce,
    realtime_frames,
    rejected_counts,
)
from nev_battery.landing import audit_landing

SRC = Path(__file__).resolve().parents[2] / "src"


def _bad_frames(good: bytes) -> list[bytes]:
    return [good[:-1] + bytes([good[-1] ^ 0x55]),  # bad BCC
            good[:40],  # truncated
            good[:21] + b"\x03" + good[22:]]  # AES: encrypted (BCC fixed below)


def _run_ingest(landing: Path, broker: str, topic: str, group: str, idle: str | None,
                roll: int, *more: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), NEV_KAFKA_BOOTSTRAP=broker)
    cmd = [sys.executable, "-m", "nev_battery.cli", "ingest", "--topic", topic, "--group", group,
           "--landing", str(landing), "--roll-messages", str(roll),
           "--session-timeout-ms", "3000"]
    if idle:
        cmd += ["--idle-exit", idle]
    cmd += list(more)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _rows_landed(landing: Path) -> int:
    n = 0
    for f in (landing / "gbt32960_realtime").glob("dt=*/*.parquet"):
        try:
            n += pq.read_metadata(f).num_rows
        except OSError:  # replaced meanwhile
            pass
    return n


def test_kill_9_mid_way_loses_nothing_and_lands_nothing_twice(broker, direct, tmp_path):
    """kill -9 of the ingest job after some files (twice), restart (stopped by SIGTERM): the landed rows are the
    produced frames exactly, compared column by column with the direct landing; packs split
    over 3 frames are joined; the bad frames are in gbt32960_rejected with their offsets."""
    topic = "crash"
    frames, keys, ts = realtime_frames(direct, max_cells_per_frame=40)
    # a few bad frames of the first vehicle, received with its frames
    bad = _bad_frames(frames[5])
    bad[2] = bad[2][:-1] + bytes([bcc(bad[2][2:-1])])
    frames = frames[:10] + bad + frames[10:]
    keys = keys[:10] + [keys[5]] * 3 + keys[10:]
    ts = np.concatenate([ts[:10], [ts[9]] * 3, ts[10:]])
    ensure_topic(broker, topic, 2)
    produce(broker, topic, frames, keys, ts)
    landing = tmp_path / "landing"
    (landing / TMP_DIR).mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (landing / TMP_DIR / f"left.parquet.{_HOST}.{dead.pid}.tmp").write_bytes(b"partial")
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
    # the restart runs until every row is landed (the last file cut by time), then SIGTERM:
    # a clean stop
    proc = _run_ingest(landing, broker, topic, "g-crash", None, 40, "--roll-seconds", "0.5")
    want = landed(direct).num_rows
    deadline = time.monotonic() + 60
    while _rows_landed(landing) < want:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, f"{_rows_landed(landing)} of {want} rows landed"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"ingested" in out, out.decode()
    assert not list((landing / TMP_DIR).glob("*.tmp"))
    same_rows(landed(landing), landed(direct))
    rej = pa.concat_tables([pq.read_table(f) for f in
                            (landing / REJECTED_TABLE).glob("dt=*/*.parquet")])
    assert rej.schema == REJECTED_SCHEMA
    assert sorted(rej.column("reason").to_pylist()) == ["bad_bcc", "encrypted", "truncated"]
    assert sorted(bytes.fromhex(h) for h in rej.column("raw_hex").to_pylist()) == sorted(bad)
    assert rej.column("kafka_topic").to_pylist() == [topic] * 3
    assert dict(rejected_counts(landing)) == {"bad_bcc": 1, "encrypted": 1, "truncated": 1}
    audit = audit_landing(landing)
    assert audit[audit.table_name == "gbt32960_realtime"].is_valid.all()
