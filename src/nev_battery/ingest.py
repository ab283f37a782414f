"""``nev-battery ingest``: GB/T 32960 frames from Kafka into the landing zone, exactly once.

One consumer in a consumer group (confluent-kafka, ``enable.auto.commit=false``). Per assigned
partition the messages are gathered into a *segment*, a contiguous offset range; a segment is
cut when it holds ``roll_messages`` messages or ``roll_bytes`` bytes (counted from the messages
themselves, so the cut depends on the offsets only), or when it has been open ``roll_seconds``
(a quiet stream). A cut segment is decoded (``gbt32960.decode_batch``) and written as one file
per collect date and table, every file named after the segment:

    <landing>/gbt32960_realtime/dt=<collect date>/part-<topic>-<partition>-<first>-<last>.parquet
    <landing>/gbt32960_rejected/dt=<receive date>/part-...   frames not landed, with the reason
    <landing>/gbt32960_session/dt=<event date>/part-...      login / logout (online sessions)

each written to ``<landing>/_ingest_tmp/``, fsynced, renamed into place (``os.replace``, same
filesystem) and its folder fsynced; only then is ``last + 1`` committed for the partition.

Exactly once: a crash before the commit re-consumes the segment from its first offset. When a
partition is assigned, the files already landed for it give the cut points (``first -> last``);
a segment starting at such a ``first`` is cut at the same ``last``, so a re-consumed range
rewrites the same files, with the same content (it is a function of the messages in the range),
instead of landing its frames twice. See docs/ingest.md.
"""

from __future__ import annotations

import bisect
import os
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .gbt32960 import BEIJING_OFFSET_MS, decode_batch, reject_frames
from .landing import REALTIME_TABLE, REALTIME_WRITE_OPTIONS

REJECTED_TABLE = "gbt32960_rejected"
SESSION_TABLE = "gbt32960_session"
TMP_DIR = "_ingest_tmp"
DEFAULT_TOPIC = "gbt32960"
DEFAULT_GROUP = "nev-battery-ingest"
_PART = re.compile(r"^part-(?P<topic>.+)-(?P<p>\d+)-(?P<a>\d+)-(?P<b>\d+)\.parquet$")


def bootstrap_default() -> str | None:
    return os.environ.get("NEV_KAFKA_BOOTSTRAP")


@dataclass
class IngestConfig:
    bootstrap: str
    landing: Path
    topic: str = DEFAULT_TOPIC
    group: str = DEFAULT_GROUP
    roll_messages: int = 50_000
    roll_bytes: int = 64 << 20
    roll_seconds: float = 60.0
    idle_exit: float | None = None  # stop after this many seconds without a message
    session_timeout_ms: int = 45_000
    extra: dict = field(default_factory=dict)  # more librdkafka settings


@dataclass
class IngestStats:
    messages: int = 0
    files: int = 0
    realtime_rows: int = 0
    rejected: dict = field(default_factory=dict)
    sessions: int = 0
    commits: int = 0


_HOST = socket.gethostname().replace(".", "_") or "host"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(table: pa.Table, final: Path, tmp_dir: Path, options: dict | None = None
                  ) -> None:
    """Write ``table`` to ``final`` atomically and durably: a temporary file outside the
    partition folders (the landing audit never sees it), fsync, rename, fsync of the folder."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{final.name}.{_HOST}.{os.getpid()}.tmp"
    pq.write_table(table, tmp, **(options or {}))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def landed_ranges(landing: Path, topic: str) -> dict[int, dict[int, int]]:
    """{partition: {first offset: last offset}} of the files already landed from ``topic``."""
    out: dict[int, dict[int, int]] = {}
    for table in (REALTIME_TABLE, REJECTED_TABLE, SESSION_TABLE):
        for f in (landing / table).glob(f"dt=*/part-{glob_escape(topic)}-*.parquet"):
            m = _PART.match(f.name)
            if m and m["topic"] == topic:
                out.setdefault(int(m["p"]), {})[int(m["a"])] = int(m["b"])
    return out


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _by_date(table: pa.Table, column: str) -> list[tuple[str, pa.Table]]:
    if table.num_rows == 0:
        return []
    days = table.column(column).to_numpy().astype("datetime64[D]")
    return [(str(d), table.filter(pa.array(days == d))) for d in np.unique(days)]


class _Segment:
    __slots__ = ("first", "forced_last", "frames", "nbytes", "offsets", "opened", "postponed",
                 "ts")

    def __init__(self) -> None:
        self.first = -1
        self.offsets: list[int] = []
        self.frames: list[bytes] = []
        self.ts: list[int] = []
        self.nbytes = 0
        self.opened = time.monotonic()
        self.forced_last: int | None = None
        self.postponed = False


class Ingestor:
    """The consumer loop; ``run()`` until SIGTERM/SIGINT (or ``idle_exit``)."""

    def __init__(self, cfg: IngestConfig) -> None:
        self.cfg = cfg
        self.landing = Path(cfg.landing)
        self.tmp = self.landing / TMP_DIR
        self.stats = IngestStats()
        self.segments: dict[int, _Segment] = {}
        self.cuts: dict[int, dict[int, int]] = {}
        self.stop = False
        self.assigned = False
        self.consumer = None

    # -- Kafka ----------------------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        self.assigned = True
        self.cuts.update(landed_ranges(self.landing, self.cfg.topic))
        for tp in partitions:
            self.segments.pop(tp.partition, None)

    def _on_revoke(self, consumer, partitions) -> None:
        # an open segment is dropped, not flushed: nothing of it is landed or committed, the
        # partition's next owner consumes it from the committed offset
        for tp in partitions:
            self.segments.pop(tp.partition, None)

    def _connect(self):
        from confluent_kafka import Consumer

        conf = {
            "bootstrap.servers": self.cfg.bootstrap,
            "group.id": self.cfg.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.cfg.session_timeout_ms,
            "isolation.level": "read_committed",
            **self.cfg.extra,
        }
        c = Consumer(conf)
        c.subscribe([self.cfg.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                     on_lost=self._on_revoke)
        return c

    # -- segments -------------------------------------------------------------------------
    def _start(self, seg: _Segment, p: int) -> None:
        seg.first = seg.offsets[0]
        seg.opened = time.monotonic()
        seg.postponed = False
        seg.forced_last = self.cuts.get(p, {}).get(seg.first)

    def _add(self, p: int, offset: int, value: bytes, ts_ms: int) -> None:
        seg = self.segments.get(p)
        if seg is None:
            seg = self.segments[p] = _Segment()
        seg.offsets.append(offset)
        seg.frames.append(value)
        seg.ts.append(ts_ms)
        seg.nbytes += len(value)
        if len(seg.offsets) == 1:
            self._start(seg, p)
        if seg.forced_last is not None:
            if offset >= seg.forced_last:  # the cut of the files already landed
                self._flush(p, seg, "forced")
        elif len(seg.offsets) >= self.cfg.roll_messages or seg.nbytes >= self.cfg.roll_bytes:
            self._flush(p, seg, "size")

    def _flush_due(self) -> None:
        now = time.monotonic()
        for p, seg in list(self.segments.items()):
            if seg.offsets and seg.forced_last is None and now - seg.opened >= (
                    self.cfg.roll_seconds * (2 if seg.postponed else 1)):
                self._flush(p, seg, "time")

    def _flush(self, p: int, seg: _Segment, why: str) -> None:
        """Land the segment up to its cut, commit, keep the rest open.

        The cut: never inside a split pack. Packs still incomplete at the end move the cut
        back to their first frame, and those frames stay in the (next) open segment; a pack
        incomplete from the segment's first frame on is rejected as ``pack_incomplete`` (on a
        size cut: a whole segment went by without its rest). The cut is a function of the
        segment's messages, so a re-consumed segment is cut at the same offset. A replayed
        range (``forced``) keeps the landed file's cut whatever its packs (after an upgrade of
        the decoder, say): the file is rewritten under its name, never landed twice."""
        cfg = self.cfg
        frames, offs, ts = seg.frames, np.array(seg.offsets, np.int64), np.array(seg.ts, np.int64)
        cut, dropped = len(frames), set()
        if why == "forced":
            cut = bisect.bisect_right(seg.offsets, seg.forced_last)
        while True:
            keep = [i for i in range(cut) if i not in dropped]
            d = decode_batch([frames[i] for i in keep], ts[keep], cfg.topic, p, offs[keep])
            if not d.pending:
                break
            groups = [[keep[i] for i in g] for g in d.pending_groups]
            head = min(groups, key=lambda g: g[0])
            if why == "forced":  # the landed file's range, whatever: never a second name
                dropped.update(i for g in groups for i in g)
            elif head[0] != keep[0]:
                cut = head[0]
            elif why == "size" or (why == "time" and seg.postponed):
                dropped.update(head)
            elif why == "time":
                seg.postponed = True  # wait once more for the rest of the pack
                return
            else:  # stopping: leave it uncommitted, the next run reads it again
                return
        rejected = d.rejected
        if dropped:
            di = sorted(dropped)
            rejected = pa.concat_tables([rejected, reject_frames(
                [frames[i] for i in di], "pack_incomplete", ts[di], cfg.topic, p, offs[di])])
        first, last = seg.first, int(offs[cut - 1])
        name = f"part-{cfg.topic}-{p}-{first}-{last}.parquet"
        for table, col, rows, opts in (
                (REALTIME_TABLE, "collect_time", d.realtime, REALTIME_WRITE_OPTIONS),
                (REJECTED_TABLE, "receive_time", rejected, {"compression": "zstd"}),
                (SESSION_TABLE, "event_time", d.sessions, {"compression": "zstd"})):
            for day, part in _by_date(rows, col):
                write_durable(part, self.landing / table / f"dt={day}" / name, self.tmp, opts)
                self.stats.files += 1
        self.stats.realtime_rows += d.realtime.num_rows
        self.stats.sessions += d.sessions.num_rows
        for r in rejected.column("reason").to_pylist():
            self.stats.rejected[r] = self.stats.rejected.get(r, 0) + 1
        self._commit(p, last + 1)
        self.cuts.get(p, {}).pop(first, None)
        rest = _Segment()
        rest.offsets, rest.frames, rest.ts = seg.offsets[cut:], frames[cut:], seg.ts[cut:]
        rest.nbytes = sum(len(f) for f in rest.frames)
        self.segments[p] = rest
        if rest.offsets:
            self._start(rest, p)
            if rest.forced_last is not None and rest.offsets[-1] >= rest.forced_last:
                self._flush(p, rest, "forced")

    def _commit(self, p: int, offset: int) -> None:
        from confluent_kafka import TopicPartition

        self.consumer.commit(offsets=[TopicPartition(self.cfg.topic, p, offset)],
                             asynchronous=False)
        self.stats.commits += 1

    # -- loop -----------------------------------------------------------------------------
    def _clear_tmp(self) -> None:
        """Delete the temporary files a crashed job of this host left (never those of a job
        still running: several may share the landing zone)."""
        if not self.tmp.is_dir():
            return
        for f in self.tmp.iterdir():
            parts = f.name.rsplit(".", 3)
            if len(parts) != 4 or parts[3] != "tmp" or parts[1] != _HOST:
                continue
            try:
                pid = int(parts[2])
                if pid != os.getpid():
                    os.kill(pid, 0)  # alive: leave it
                    continue
            except ProcessLookupError:
                pass
            except (ValueError, PermissionError):
                continue
            f.unlink(missing_ok=True)

    def run(self) -> IngestStats:
        self._clear_tmp()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass
        self.consumer = self._connect()
        last_msg = time.monotonic()
        try:
            while not self.stop:
                msgs = self.consumer.consume(num_messages=5000, timeout=0.2)
                for m in msgs:
                    err = m.error()
                    if err:
                        if err.fatal():
                            raise RuntimeError(f"Kafka error: {err}")
                        # transient (a broker away, end of partition): the client retries
                        print(f"nev-battery ingest: {err}", file=sys.stderr)
                        continue
                    ts_type, ts = m.timestamp()
                    if ts_type == 0 or ts is None or ts < 0:  # no timestamp: now
                        ts = int(time.time() * 1000)
                    self.stats.messages += 1
                    self._add(m.partition(), m.offset(), m.value() or b"", ts)
                if msgs:
                    last_msg = time.monotonic()
                self._flush_due()
                if (self.cfg.idle_exit is not None and not msgs
                        and time.monotonic() - last_msg >= self.cfg.idle_exit):
                    if self._caught_up():
                        break
                    last_msg = time.monotonic()
            # stopping: land what is open (a time cut), then leave the group
            for p, seg in list(self.segments.items()):
                if seg.offsets and seg.forced_last is None:
                    self._flush(p, seg, "stop")
        finally:
            self.consumer.close()
        return self.stats

    def _caught_up(self) -> bool:
        """Every partition of the topic is assigned to this consumer and read to its end (a
        partition still held by a crashed member of the group is not: wait for the rebalance)."""
        c = self.consumer
        meta = c.list_topics(self.cfg.topic, timeout=5).topics.get(self.cfg.topic)
        mine = c.assignment()
        if meta is None or not mine or {tp.partition for tp in mine} != set(meta.partitions):
            return False
        for tp in c.position(mine):
            _, high = c.get_watermark_offsets(tp, timeout=5, cached=False)
            if tp.offset < 0:  # nothing read yet: only an empty partition is caught up
                if high > self._committed(tp):
                    return False
            elif tp.offset < high:
                return False
        return True

    def _committed(self, tp) -> int:
        got = self.consumer.committed([tp], timeout=5)[0].offset
        return max(got, 0)

    def _on_signal(self, signum, frame) -> None:
        self.stop = True


def ingest(cfg: IngestConfig) -> IngestStats:
    return Ingestor(cfg).run()


# --------------------------------------------------------------------------------------------
# the simulated T-BOXes: encode a landing zone's frames and produce them
# --------------------------------------------------------------------------------------------


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                        replication_factor=1)])[topic]
    try:
        fut.result(timeout=30)
    except Exception as exc:  # created meanwhile by someone else
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def realtime_frames(landing: Path, max_cells_per_frame: int = 200
                    ) -> tuple[list[bytes], list[bytes], np.ndarray]:
    """The frames a fleet's T-BOXes send for a landing zone's real-time rows, in arrival order
    (receive time): (frames, keys = VINs, Kafka timestamps in ms since the epoch). Every
    vehicle logs in before its first frame and out after its last."""
    from .gbt32960 import encode_login, encode_logout, encode_realtime

    files = sorted((Path(landing) / REALTIME_TABLE).glob("dt=*/*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    if table is None or table.num_rows == 0:
        return [], [], np.zeros(0, np.int64)
    frames, rows = encode_realtime(table, max_cells_per_frame)
    recv = table.column("receive_time").to_numpy().astype("datetime64[ms]").astype(np.int64)
    ts = recv[rows] - BEIJING_OFFSET_MS
    vins = np.array(table.column("vin").to_pylist(), object)
    keys = vins[rows].tolist()
    extra_f, extra_k, extra_t = [], [], []
    uv, inv = np.unique(vins.astype(str), return_inverse=True)
    first = np.full(len(uv), np.iinfo(np.int64).max)
    last = np.full(len(uv), np.iinfo(np.int64).min)
    np.minimum.at(first, inv, recv)
    np.maximum.at(last, inv, recv)
    for vin, lo, hi in zip(uv.tolist(), first.tolist(), last.tolist()):
        t_in, t_out = lo - 1000, hi + 1000
        for t_ms, make in ((t_in, encode_login), (t_out, encode_logout)):
            t = np.datetime64(t_ms, "ms").astype("datetime64[s]").item()
            extra_f.append(make(vin, t, 1))
            extra_k.append(vin)
            extra_t.append(t_ms - BEIJING_OFFSET_MS)
    frames += extra_f
    keys += extra_k
    ts = np.concatenate([ts, np.array(extra_t, np.int64)])
    order = np.argsort(ts, kind="stable")
    return ([frames[i] for i in order], [keys[i].encode() for i in order], ts[order])


def produce(bootstrap: str, topic: str, frames: list[bytes], keys: list[bytes],
            timestamps_ms: np.ndarray) -> int:
    """Produce the frames keyed by VIN (one vehicle's frames stay in order on one partition),
    the Kafka timestamp = the platform's receive time."""
    from confluent_kafka import Producer

    errors: list = []
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all",
                     "queue.buffering.max.messages": 200_000})

    def done(err, msg) -> None:
        if err is not None:
            errors.append(err)

    for f, k, t in zip(frames, keys, timestamps_ms.tolist()):
        while True:
            try:
                prod.produce(topic, value=f, key=k, timestamp=int(t), on_delivery=done)
                break
            except BufferError:
                prod.poll(0.1)
        prod.poll(0)
    left = prod.flush(60)
    if errors or left:
        raise RuntimeError(f"produce to {topic}: {len(errors)} error(s) ({errors[:3]}), "
                           f"{left} message(s) not delivered")
    return len(frames)


def rejected_counts(landing: Path) -> list[tuple[str, int]]:
    """Rejected frames per reason in ``<landing>/gbt32960_rejected/`` (for ``summary``)."""
    files = sorted((Path(landing) / REJECTED_TABLE).glob("dt=*/*.parquet"))
    if not files:
        return []
    counts: dict[str, int] = {}
    for f in files:
        vc = pc.value_counts(pq.read_table(f, columns=["reason"]).column("reason"))
        for item in vc.to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def online_sessions(landing: Path) -> pa.Table:
    """The vehicles' online sessions from the landed login/logout frames: one row per login,
    ended by the vehicle's next logout (null while online, or when a new login came first).
    Columns: vin, serial_no, login_time, logout_time (frame times, Beijing)."""
    import duckdb

    files = sorted((Path(landing) / SESSION_TABLE).glob("dt=*/*.parquet"))
    if not files:
        return pa.table({"vin": pa.array([], pa.string()), "serial_no": pa.array([], pa.int32()),
                         "login_time": pa.array([], pa.timestamp("ms")),
                         "logout_time": pa.array([], pa.timestamp("ms"))})
    with duckdb.connect() as con:
        return con.sql("""
            with ev as (
                select distinct vin, event, event_time, serial_no from read_parquet(?)
            ), nxt as (
                select *, lead(event) over w as next_event, lead(event_time) over w as next_time
                from ev window w as (partition by vin order by event_time, event)
            )
            select vin, serial_no, event_time as login_time,
                   case when next_event = 'logout' then next_time end as logout_time
            from nxt where event = 'login' order by vin, login_time
        """, params=[[str(f) for f in files]]).to_arrow_table()
