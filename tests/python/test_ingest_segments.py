"""The ingest job's segments without a broker (a stub consumer records the commits): file names
and cut points, packs never split by a cut, and a re-consumption after a crash replaying the cut
points of the files already landed, even those cut by time, under another roll size."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nev_battery.gbt32960 import encode_realtime
from nev_battery.ingest import (
    _HOST,
    TMP_DIR,
    IngestConfig,
    Ingestor,
    landed_ranges,
    write_durable,
)
from nev_battery.landing import REALTIME_ARROW_SCHEMA, audit_landing
from nev_battery.simulate import SimConfig, simulate

NAME = re.compile(r"part-rt-0-(\d+)-(\d+)\.parquet")


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[int] = []

    def commit(self, offsets, asynchronous) -> None:
        assert asynchronous is False
        self.commits.append(offsets[0].offset)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    simulate(SimConfig(vehicles=2, days=1, seed=9), root / "landing", root / "truth")
    files = sorted((root / "landing" / "gbt32960_realtime").glob("dt=*/*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    table = table.slice(0, 500)
    frames, rows = encode_realtime(table, max_cells_per_frame=40)  # 3 frames per row
    recv = table.column("receive_time").to_numpy().astype("datetime64[ms]").astype(np.int64)
    return table, frames, recv[rows] - 8 * 3600_000


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _ingestor(landing: Path, roll: int) -> Ingestor:
    ing = Ingestor(IngestConfig(bootstrap="unused", landing=landing, topic="rt",
                                roll_messages=roll, roll_seconds=3600))
    ing.consumer = _Consumer()
    ing._on_assign(None, [])
    return ing


def _ranges(landing: Path) -> list[tuple[int, int]]:
    return sorted(landed_ranges(landing, "rt").get(0, {}).items())


def _rows(landing: Path) -> pa.Table:
    files = sorted((landing / "gbt32960_realtime").glob("dt=*/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def _sorted(t: pa.Table) -> pa.Table:
    return t.sort_by([(c, "ascending") for c in ("vin", "collect_time", "cmd", "receive_time",
                                                 "odometer", "soc")])


def test_cuts_files_and_commits(stream, tmp_path):
    table, frames, ts = stream
    ing = _ingestor(tmp_path, roll=50)
    for off, (f, t) in enumerate(zip(frames, ts.tolist())):
        ing._add(0, off, f, t)
    ing._flush(0, ing.segments[0], "stop")
    ranges = _ranges(tmp_path)
    # contiguous, non-overlapping ranges covering every offset; a commit after each file set
    assert ranges[0][0] == 0 and ranges[-1][1] == len(frames) - 1
    assert all(b + 1 == c for (_, b), (c, _) in itertools.pairwise(ranges))
    assert ing.consumer.commits == [b + 1 for _, b in ranges]
    # a cut never splits a pack: every file's rows are whole (no pack_incomplete anywhere)
    assert ing.stats.rejected == {}
    # 50 messages cut inside a pack: every cut moved back to the pack's first frame
    assert all((b - a + 1) % 3 == 0 and b - a + 1 < 50 for a, b in ranges)
    got = _rows(tmp_path)
    assert got.schema == REALTIME_ARROW_SCHEMA and got.num_rows == table.num_rows
    assert _sorted(got).equals(_sorted(table))
    assert not list((tmp_path / TMP_DIR).glob("*"))
    assert audit_landing(tmp_path).query("table_name == 'gbt32960_realtime'").is_valid.all()


def test_reconsumption_replays_the_landed_cuts(stream, tmp_path):
    table, frames, ts = stream
    first = _ingestor(tmp_path, roll=60)
    for off in range(700):
        first._add(0, off, frames[off], int(ts[off]))
        if off == 332:  # a quiet partition: cut by time (after a whole pack)
            first._flush(0, first.segments[0], "time")
    # crash: files up to some offset landed, maybe not all committed; a file half-written
    (tmp_path / TMP_DIR / f"part-rt-0-x.parquet.{_HOST}.{_dead_pid()}.tmp").write_bytes(b"partial")
    (tmp_path / TMP_DIR / "part-rt-0-y.parquet.otherhost.1.tmp").write_bytes(b"another host's")
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("part-*.parquet")}
    assert any(int(NAME.match(n)[2]) == 332 for n in before)
    # the restart re-reads from offset 0 (nothing committed) with another roll size
    again = _ingestor(tmp_path, roll=97)
    again._clear_tmp()
    for off, (f, t) in enumerate(zip(frames, ts.tolist())):
        again._add(0, off, f, t)
    again._flush(0, again.segments[0], "stop")
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("part-*.parquet")}
    assert {k: after[k] for k in before} == before  # rewritten identically
    ranges = _ranges(tmp_path)
    assert all(b + 1 == c for (_, b), (c, _) in itertools.pairwise(ranges))
    assert ranges[-1][1] == len(frames) - 1
    assert _sorted(_rows(tmp_path)).equals(_sorted(table))
    assert [p.name for p in (tmp_path / TMP_DIR).glob("*.tmp")] == [
        "part-rt-0-y.parquet.otherhost.1.tmp"]


def test_write_durable_leaves_no_temporary(tmp_path):
    t = pa.table({"a": [1, 2]})
    write_durable(t, tmp_path / "x" / "dt=2026-01-01" / "f.parquet", tmp_path / TMP_DIR)
    assert pq.read_table(tmp_path / "x" / "dt=2026-01-01" / "f.parquet").equals(t)
    assert not list((tmp_path / TMP_DIR).iterdir())


def test_summary_counts_rejected_frames_per_reason(tmp_path):
    from nev_battery.gbt32960 import decode_batch
    from nev_battery.ingest import REJECTED_TABLE, rejected_counts
    from nev_battery.warehouse import format_summary

    d = decode_batch([b"##\x02", b"$$" + bytes(30), b"##\x02\xfe" + bytes(30)], topic="rt")
    write_durable(d.rejected, tmp_path / REJECTED_TABLE / "dt=1970-01-01" / "part-rt-0-0-2.parquet",
                  tmp_path / TMP_DIR)
    counts = rejected_counts(tmp_path)
    assert sum(n for _, n in counts) == 3 and counts == [("length_mismatch", 2), ("truncated", 1)]
    text = format_summary({"rows": {}, "rejected_frames": counts})
    assert "frames rejected by the ingest job" in text and "truncated" in text
    # not a table the landing audit or ODS reads
    assert not audit_landing(tmp_path).table_name.eq(REJECTED_TABLE).any()


@pytest.mark.parametrize("args, flag", [
    (["ingest", "--roll-messages", "0"], "--roll-messages"),
    (["ingest", "--roll-mb", "x"], "--roll-mb"),
    (["ingest", "--roll-seconds", "-1"], "--roll-seconds"),
    (["ingest", "--idle-exit", "nan"], "--idle-exit"),
    (["simulate", "--to-kafka", "--partitions", "0"], "--partitions"),
    (["ingest", "--kafka-config", "security.protocol"], "--kafka-config"),
])
def test_a_malformed_ingest_flag_is_a_usage_error(args, flag, capsys):
    from nev_battery import cli

    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2 and f"argument {flag}:" in capsys.readouterr().err


def test_ingest_flags_have_help_and_need_a_cluster(monkeypatch, tmp_path, capsys):
    from nev_battery import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("ingest", "simulate"):
        for action in sub.choices[name]._actions:
            if action.dest in ("help",) or name == "simulate" and action.dest not in (
                    "to_kafka", "kafka_bootstrap", "topic", "partitions", "max_cells_per_frame"):
                continue
            assert action.help, (name, action.dest)
    monkeypatch.delenv("NEV_KAFKA_BOOTSTRAP", raising=False)
    assert cli.main(["ingest", "--bootstrap", "", "--landing", str(tmp_path)]) == 2
    assert "no Kafka cluster" in capsys.readouterr().err


def test_online_sessions_pair_login_and_logout(tmp_path):
    import datetime as dt

    from nev_battery.gbt32960 import decode_batch, encode_login, encode_logout
    from nev_battery.ingest import SESSION_TABLE, online_sessions

    t = dt.datetime(2026, 3, 1, 8)
    h = dt.timedelta(hours=1)
    a, b = "LTEST000000000001", "LTEST000000000002"
    frames = [encode_login(a, t, 1), encode_logout(a, t + h, 1), encode_login(a, t + 2 * h, 2),
              encode_login(b, t, 5), encode_login(b, t + h, 6), encode_logout(b, t + 3 * h, 6)]
    d = decode_batch(frames)
    write_durable(d.sessions, tmp_path / SESSION_TABLE / "dt=2026-03-01" / "part-x-0-0-5.parquet",
                  tmp_path / TMP_DIR)
    got = [(r["vin"], r["serial_no"], r["login_time"], r["logout_time"])
           for r in online_sessions(tmp_path).to_pylist()]
    assert got == [(a, 1, t, t + h), (a, 2, t + 2 * h, None),  # still online
                   (b, 5, t, None), (b, 6, t + h, t + 3 * h)]  # a login without its logout
