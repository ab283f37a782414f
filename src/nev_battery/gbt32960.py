"""GB/T 32960.3 binary frames: a batch decoder to the landing contract's raw codes, and an
encoder (the simulated T-BOX).

Frame (2016 and 2025): start ``##`` (2016) or ``$$`` (2025), command, response flag (0xFE for a
vehicle's command), VIN (17 ASCII), encryption (0x01 none), data length (WORD, big-endian), data,
BCC (XOR of every byte from the command to the last data byte). Real-time (0x02) and re-send
(0x03) data: collection time (6 bytes, Beijing time) then information units, each a type byte
and its body (docs/ingest.md lists the layouts of both revisions).

The decoder works on a batch of frames at once: the header checks, the BCC, the times and every
field are gathered with numpy from one buffer holding the whole batch; Python only walks each
frame's chain of units to find where they are. Output: one row per real-time frame in the
landing contract's types (landing.REALTIME_ARROW_SCHEMA: raw codes exactly as carried, so ODS
decodes them as it does the simulator's), one row per rejected frame (raw bytes, reason), one
row per login/logout (the vehicles' online sessions).

Cell voltages of a pack split over several pieces (2016: "frame start index" and "cells in this
frame"; within one frame or over consecutive frames of the same VIN and collection time) are
joined; pieces that do not make a whole pack are returned as pending, for the caller to carry
into the next batch or reject as ``pack_incomplete``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .landing import REALTIME_ARROW_SCHEMA

HEADER_LEN = 24  # start 2, command 1, response 1, VIN 17, encryption 1, length 2
FRAME_OVERHEAD = HEADER_LEN + 1  # + BCC
CMD_LOGIN, CMD_REALTIME, CMD_RESEND, CMD_LOGOUT, CMD_HEARTBEAT, CMD_TIME_SYNC = 1, 2, 3, 4, 7, 8
KNOWN_COMMANDS = (CMD_LOGIN, CMD_REALTIME, CMD_RESEND, CMD_LOGOUT, CMD_HEARTBEAT, CMD_TIME_SYNC)
RESPONSE_COMMAND = 0xFE  # response flag of a command (an uplink frame from the vehicle)
ENC_NONE = 0x01
ENC_ALGORITHMS = (0x02, 0x03, 0x04, 0x05)  # RSA, AES (2016), SM2, SM4 (2025)
BEIJING_OFFSET_MS = 8 * 3600 * 1000  # GB/T 32960 times are Beijing time (UTC+8)
FAST_WALK = True  # walk the units of a batch at once (False: frame by frame, for tests)
MAX_CELLS_PER_FRAME = 200  # 2016: "cells in this frame" <= 200; larger packs are split

#: why a frame is rejected (column ``reason`` of the rejected-frames table)
REJECT_REASONS = {
    "bad_start": "does not start with ## (2016) or $$ (2025)",
    "truncated": "shorter than its header or than its declared data length",
    "length_mismatch": "longer than header + declared data length + BCC",
    "bad_bcc": "BCC (XOR from the command to the last data byte) does not match",
    "not_a_command": "response flag is not 0xFE: a response, not a vehicle's command",
    "encrypted": "data encrypted (RSA, AES, SM2, SM4): not decoded",
    "bad_encryption_flag": "encryption flag is not a defined value",
    "unknown_command": "command is none of 0x01-0x04, 0x07, 0x08",
    "bad_vin": "VIN is not 17 ASCII letters and digits",
    "bad_time": "collection time is not a real date and time",
    "bad_payload": "login/logout data shorter than its fixed fields",
    "unit_overrun": "an information unit runs past the end of the data",
    "unknown_unit": "an information unit whose type and length this decoder does not know",
    "pack_incomplete": "cell-voltage pieces of a split pack that never made a whole pack",
}

#: the rejected-frames table (landing <root>/gbt32960_rejected/dt=<receive date>/)
REJECTED_SCHEMA = pa.schema([
    ("receive_time", pa.timestamp("ms")),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("vin", pa.string()),
    ("cmd", pa.int32()),
    ("kafka_topic", pa.string()),
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("raw_hex", pa.string()),
])

#: login/logout events (landing <root>/gbt32960_session/dt=<event date>/)
SESSION_SCHEMA = pa.schema([
    ("vin", pa.string()),
    ("event", pa.string()),  # login | logout
    ("event_time", pa.timestamp("ms")),  # the frame's time (Beijing)
    ("receive_time", pa.timestamp("ms")),
    ("serial_no", pa.int32()),  # login serial number (1..65531), the logout repeats it
    ("iccid", pa.string()),  # login only
    ("kafka_topic", pa.string()),
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
])


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _walk(b: bytes, p: int, end: int, v25: bool) -> tuple:
    """Find the units of one real-time frame's data ``b[p:end]`` (after the time).

    Returns (vehicle, extremes, alarm, fault-code offset, fault-code count, probe offset, probe
    count, cell pieces of subsystem 1 [(start index, offset, count)], cells in the pack, or -1
    without a cell unit); offsets are absolute in ``b``, -1 when the unit is absent."""
    veh = ext = alm = fco = pro = -1
    fcn = prn = 0
    pieces: list = []
    total = -1
    if v25:
        u_alm, u_cel, u_tmp, u_ext, n_veh, n_mot, n_eng, n_pos = 6, 7, 8, -1, 18, 10, 2, 10
    else:
        u_alm, u_cel, u_tmp, u_ext, n_veh, n_mot, n_eng, n_pos = 7, 8, 9, 6, 20, 12, 5, 9
    while p < end:
        t = b[p]
        p += 1
        if t == 1:
            veh, p = p, p + n_veh
        elif t == u_cel:
            if p >= end:
                raise _Reject("unit_overrun", f"unit {t:#04x} at byte {p - 1}")
            k = b[p]
            p += 1
            hdr = 7 if v25 else 10
            for _ in range(k):
                if p + hdr > end:
                    raise _Reject("unit_overrun", f"cell-voltage unit {t:#04x}")
                if v25:  # no, voltage, current, cells (WORD), cells
                    m = b[p + 5] << 8 | b[p + 6]
                    tot, st = m, 1
                else:  # no, voltage, current, cells in pack, frame start index, cells here
                    tot, st, m = b[p + 5] << 8 | b[p + 6], b[p + 7] << 8 | b[p + 8], b[p + 9]
                no, off = b[p], p + hdr
                p = off + 2 * m
                if p > end:
                    raise _Reject("unit_overrun", f"cell-voltage unit {t:#04x} runs past the data")
                if no == 1:
                    pieces.append((st, off, m))
                    total = tot
        elif t == u_tmp:
            if p >= end:
                raise _Reject("unit_overrun", f"unit {t:#04x} at byte {p - 1}")
            k = b[p]
            p += 1
            for _ in range(k):
                if p + 3 > end:
                    raise _Reject("unit_overrun", f"probe-temperature unit {t:#04x}")
                m = b[p + 1] << 8 | b[p + 2]
                if b[p] == 1:
                    pro, prn = p + 3, m
                p += 3 + m
        elif t == u_ext:
            ext, p = p, p + 14
        elif t == u_alm:
            alm = p
            p += 5
            for j in range(4):
                if p >= end:
                    raise _Reject("unit_overrun", f"alarm unit {t:#04x}")
                m = b[p]
                if j == 0:
                    fco, fcn = p + 1, m
                p += 1 + 4 * m
            if v25:  # general alarm list: count, then (alarm bit, level) pairs
                if p >= end:
                    raise _Reject("unit_overrun", f"alarm unit {t:#04x}")
                p += 1 + 2 * b[p]
        elif t == 2:
            if p >= end:
                raise _Reject("unit_overrun", f"unit {t:#04x} at byte {p - 1}")
            p += 1 + n_mot * b[p]
        elif t == 4:
            p += n_eng
        elif t == 5:
            p += n_pos
        elif t == 3 and not v25:  # fuel cell: 8 bytes, probe count (WORD), probes, 10 bytes
            if p + 8 > end:
                raise _Reject("unit_overrun", f"unit {t:#04x} at byte {p - 1}")
            p += 18 + (b[p + 6] << 8 | b[p + 7])
        elif 0x80 <= t <= 0xFE:  # custom unit: length (WORD) then data
            if p + 2 > end:
                raise _Reject("unit_overrun", f"custom unit {t:#04x} at byte {p - 1}")
            p += 2 + (b[p] << 8 | b[p + 1])
        elif t == 0xFF and v25:  # signature: algorithm, r (WORD length), s (WORD length)
            q = p + 1
            for _ in range(2):
                if q + 2 > end:
                    raise _Reject("unit_overrun", "signature runs past the data")
                q += 2 + (b[q] << 8 | b[q + 1])
            p = q
            break
        else:
            raise _Reject("unknown_unit", f"unit type {t:#04x} at byte {p - 1}: length unknown")
        if p > end:
            raise _Reject("unit_overrun", f"unit {t:#04x} runs {p - end} byte(s) past the data")
    if p != end:
        raise _Reject("unit_overrun", f"data continues {end - p} byte(s) after the signature")
    return veh, ext, alm, fco, fcn, pro, prn, pieces, total


def _whole(pieces: list, total: int) -> list | None:
    """The pieces in cell order when they make the whole pack (cells 1..total), else None."""
    if len(pieces) == 1:
        st, _, m = pieces[0]
        return pieces if st == 1 and m == total else None
    seen = {}
    for pc in pieces:
        seen.setdefault(pc[0], pc)
    nxt, out = 1, []
    for st in sorted(seen):
        if st != nxt:
            return None
        out.append(seen[st])
        nxt += seen[st][2]
    return out if nxt == total + 1 else None


@dataclass
class Decoded:
    """What one batch decodes to. ``realtime`` rows are in the order of the frames that complete
    them; ``realtime_index``: the batch index of that frame (its Kafka offset, for the caller)."""

    realtime: pa.Table
    realtime_index: np.ndarray
    rejected: pa.Table
    sessions: pa.Table
    pending: list[int] = field(default_factory=list)  # frames of incomplete split packs
    pending_groups: list[list[int]] = field(default_factory=list)  # the same, per pack
    counts: dict = field(default_factory=dict)  # frames per command, rejected per reason
    joined: list[int] = field(default_factory=list)  # pieces landed in a later frame's row


def _u16(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (a[pos].astype(np.int32) << 8) | a[pos + 1]


def _u32(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return ((a[pos].astype(np.int64) << 24) | (a[pos + 1].astype(np.int64) << 16)
            | (a[pos + 2].astype(np.int64) << 8) | a[pos + 3])


def _times(a: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 6-byte times at ``pos`` (year-2000, month, day, hour, minute, second) as
    datetime64[ms] and a mask of the valid ones."""
    y, mo, d, h, mi, s = (a[pos + k].astype(np.int64) for k in range(6))
    ok = (mo >= 1) & (mo <= 12) & (d >= 1) & (h < 24) & (mi < 60) & (s < 60)
    month = ((y * 12 + np.clip(mo, 1, 12) - 1) + 30 * 12).astype("datetime64[M]")
    days = month.astype("datetime64[D]") + (d - 1).astype("timedelta64[D]")
    ok &= days < (month + 1).astype("datetime64[D]")
    ms = days.astype("datetime64[ms]") + ((h * 3600 + mi * 60 + s) * 1000).astype("timedelta64[ms]")
    return ms, ok


def _list(a: np.ndarray, sr: np.ndarray, so: np.ndarray, sc: np.ndarray, nrows: int, width: int,
          present: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A list column from segments (row, byte offset, count; ordered by row) of big-endian
    values in ``a``."""
    lens = np.bincount(sr, weights=sc, minlength=nrows).astype(np.int64)
    offsets = np.zeros(nrows + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    tot = int(offsets[-1])
    ends = so + width * sc
    if len(so) and (so[1:] >= ends[:-1]).all():
        # segments in buffer order, disjoint (every row from one frame, the common case): a
        # mask over the buffer picks their bytes in one pass, read as big-endian words
        runs = np.empty(2 * len(so) + 1, np.int64)  # gap, segment, gap, ..., segment, rest
        runs[0], runs[-1] = so[0], len(a) - ends[-1]
        runs[1::2] = ends - so
        runs[2:-1:2] = so[1:] - ends[:-1]
        pick = np.zeros(len(runs), bool)
        pick[1::2] = True
        raw = a[np.repeat(pick, runs)]
        vals = (raw.astype(np.int32) if width == 1 else raw.view(">u2").astype(np.int32)
                if width == 2 else raw.view(">u4").astype(np.int64))
    else:
        within = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(sc) - sc, sc)
        pos = np.repeat(so, sc) + within * width
        vals = (a[pos].astype(np.int32) if width == 1 else _u16(a, pos) if width == 2
                else _u32(a, pos))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(vals, typ.value_type),
                                    mask=pa.array(~present))


REASONS = list(REJECT_REASONS)
_R = {r: i + 1 for i, r in enumerate(REASONS)}  # reason code: 0 = not rejected


def _walk_fast(a: np.ndarray, pos: np.ndarray, end: np.ndarray, v25: bool):
    """Walk the units of many frames of one revision at once, one unit per step. The frames
    this cannot do (a split pack, several subsystems, a unit of unknown length, any overrun)
    are flagged for the per-frame walk, which decodes them or finds the exact reason."""
    m = len(pos)
    veh, ext, alm, fco, fcn, pro, prn, cel, ceN = (np.full(m, -1, np.int64) for _ in range(9))
    slow = np.zeros(m, bool)
    pos = pos.copy()
    last = len(a) - 1
    if v25:
        u_alm, u_cel, u_tmp, fixed = 6, 7, 8, ((1, 18, veh), (4, 2, None), (5, 10, None))
        n_mot = 10
    else:
        u_alm, u_cel, u_tmp, fixed = 7, 8, 9, ((1, 20, veh), (6, 14, ext), (4, 5, None),
                                               (5, 9, None))
        n_mot = 12
    for _ in range(64):
        act = np.flatnonzero((pos < end) & ~slow)
        if act.size == 0:
            break
        p0 = pos[act]
        t = a[p0]
        p1 = p0 + 1
        q = np.minimum(p1, last - 8)
        ln = np.full(act.size, -1, np.int64)  # body length; -1: the slow walk
        for code, size, arr in fixed:
            k = t == code
            ln[k] = size
            if arr is not None:
                arr[act[k]] = p1[k]
        k = t == 2
        ln[k] = 1 + n_mot * a[q[k]].astype(np.int64)
        if not v25:  # fuel cell: 8 bytes, probes (WORD), probes, 10 bytes
            k = t == 3
            ln[k] = 18 + _u16(a, q[k] + 6)
        k = (t >= 0x80) & (t <= 0xFE)  # custom: length (WORD) + data
        ln[k] = 2 + _u16(a, q[k])
        k = np.flatnonzero(t == u_alm)
        if k.size:
            p = p1[k] + 5
            n1 = a[np.minimum(p, last)].astype(np.int64)
            alm[act[k]], fco[act[k]], fcn[act[k]] = p1[k], p + 1, n1
            p = p + 1 + 4 * n1
            for _ in range(3):
                p = p + 1 + 4 * a[np.minimum(p, last)].astype(np.int64)
            if v25:  # (alarm, level) pairs
                p = p + 1 + 2 * a[np.minimum(p, last)].astype(np.int64)
            ln[k] = p - p1[k]
        k = np.flatnonzero(t == u_cel)
        if k.size:  # one subsystem, number 1, the whole pack in this frame
            b = np.minimum(p1[k], last - 11)
            if v25:  # k, no, V, A, cells (WORD), cells
                m_ = _u16(a, b + 6).astype(np.int64)
                ok = (a[b] == 1) & (a[b + 1] == 1)
                ln[k] = np.where(ok, 8 + 2 * m_, -1)
                cel[act[k]], ceN[act[k]] = b + 8, m_
            else:  # k, no, V, A, cells in pack, start index, cells here, cells
                m_ = a[b + 10].astype(np.int64)
                ok = ((a[b] == 1) & (a[b + 1] == 1) & (_u16(a, b + 8) == 1)
                      & (_u16(a, b + 6) == m_))
                ln[k] = np.where(ok, 11 + 2 * m_, -1)
                cel[act[k]], ceN[act[k]] = b + 11, m_
        k = np.flatnonzero(t == u_tmp)
        if k.size:
            b = np.minimum(p1[k], last - 4)
            n_ = _u16(a, b + 2).astype(np.int64)
            ok = (a[b] == 1) & (a[b + 1] == 1)
            ln[k] = np.where(ok, 4 + n_, -1)
            pro[act[k]], prn[act[k]] = b + 4, n_
        if v25:  # signature: algorithm, r (WORD length), s (WORD length); ends the data
            k = np.flatnonzero(t == 0xFF)
            if k.size:
                r = _u16(a, np.minimum(p1[k] + 1, last - 1)).astype(np.int64)
                sl = _u16(a, np.minimum(p1[k] + 3 + r, last - 1)).astype(np.int64)
                ln[k] = 5 + r + sl
        nxt = p1 + ln
        bad = (ln < 0) | (nxt > end[act])
        slow[act[bad]] = True
        pos[act] = nxt
    slow |= pos != end
    return slow, veh, ext, alm, fco, fcn, pro, prn, cel, ceN


def decode_batch(frames: list[bytes], receive_ms: np.ndarray | None = None,
                 topic: str = "", partition: int = -1, offsets: np.ndarray | None = None,
                 verify_bcc: bool = True) -> Decoded:
    """Decode a batch of frames. ``receive_ms``: each frame's receive time (ms since the epoch,
    UTC; the Kafka message timestamp), stored as Beijing time; ``offsets``: their Kafka offsets
    (also the topic and partition: kept with rejected frames and sessions)."""
    n = len(frames)
    receive_ms = np.zeros(n, np.int64) if receive_ms is None else np.asarray(receive_ms, np.int64)
    offsets = np.arange(n, dtype=np.int64) if offsets is None else np.asarray(offsets, np.int64)
    big = b"".join(frames)
    # padded: every header field can be gathered for every frame (masked after)
    a = np.frombuffer(big + bytes(64), np.uint8)
    lens = np.fromiter(map(len, frames), np.int64, n)
    starts = np.zeros(n, np.int64)
    if n:
        np.cumsum(lens[:-1], out=starts[1:])
    code = np.zeros(n, np.int8)  # reason code, 0 = not rejected
    detail: dict[int, str] = {}

    def reject(mask: np.ndarray, why: str) -> np.ndarray:
        m = mask & (code == 0)
        code[m] = _R[why]
        return np.flatnonzero(m)

    full = lens >= FRAME_OVERHEAD
    hs = starts
    s0, s1 = a[hs], a[hs + 1]
    v25 = (s0 == 0x24) & (s1 == 0x24)
    reject((lens >= 2) & ~(((s0 == 0x23) & (s1 == 0x23)) | v25), "bad_start")
    for i in reject(~full, "truncated").tolist():
        detail[i] = f"{lens[i]} byte(s), a frame has at least {FRAME_OVERHEAD}"
    dlen = _u16(a, hs + 22).astype(np.int64)
    want = dlen + FRAME_OVERHEAD
    for why, mask in (("truncated", full & (lens < want)), ("length_mismatch", lens > want)):
        for i in reject(mask & full, why).tolist():
            detail[i] = f"{lens[i]} byte(s), header declares {want[i]}"
    idx = np.flatnonzero(code == 0)
    if verify_bcc and idx.size:
        bounds = np.empty(2 * idx.size, np.int64)
        bounds[0::2] = starts[idx] + 2
        bounds[1::2] = starts[idx] + lens[idx] - 1
        x = np.bitwise_xor.reduceat(a, bounds)[0::2]
        carried = a[starts[idx] + lens[idx] - 1]
        bad = np.flatnonzero(x != carried)
        mask = np.zeros(n, bool)
        mask[idx[bad]] = True
        reject(mask, "bad_bcc")
        for i, c, v in zip(idx[bad].tolist(), carried[bad].tolist(), x[bad].tolist()):
            detail[i] = f"BCC {c:#04x}, computed {v:#04x}"
    cmd = a[hs + 2].astype(np.int32)
    resp = a[hs + 3]
    enc = a[hs + 21]
    reject(full & (resp != RESPONSE_COMMAND), "not_a_command")
    reject(full & np.isin(enc, ENC_ALGORITHMS), "encrypted")
    reject(full & (enc != ENC_NONE), "bad_encryption_flag")
    reject(full & ~np.isin(cmd, KNOWN_COMMANDS), "unknown_command")
    vinb = a[hs[:, None] + 4 + np.arange(17)]
    alnum = (((vinb >= 0x30) & (vinb <= 0x39)) | ((vinb >= 0x41) & (vinb <= 0x5A))
             | ((vinb >= 0x61) & (vinb <= 0x7A))).all(axis=1)
    reject(full & ~alnum, "bad_vin")
    has_time = full & np.isin(cmd, (CMD_LOGIN, CMD_REALTIME, CMD_RESEND, CMD_LOGOUT))
    reject(has_time & (dlen < 6), "bad_payload")
    tpos = np.where(has_time & (dlen >= 6), hs + HEADER_LEN, 0)
    ftime, tok = _times(a, tpos)
    reject(has_time & ~tok, "bad_time")
    reject(full & (((cmd == CMD_LOGIN) & (dlen < 28)) | ((cmd == CMD_LOGOUT) & (dlen < 8))),
           "bad_payload")

    # walk the units of every real-time frame still standing: all at once, then one by one
    # the frames the vectorized walk leaves (2025 frames, split packs, odd or bad units)
    rt = np.flatnonzero((code == 0) & ((cmd == CMD_REALTIME) | (cmd == CMD_RESEND)))
    fast_parts, slow_parts, unit_parts = [], [], []
    for rev in (False, True):
        fr = rt[v25[rt] == rev]
        slow, *units = _walk_fast(a, starts[fr] + 30, starts[fr] + HEADER_LEN + dlen[fr], rev)
        if not FAST_WALK:  # (tests: every frame through the per-frame walk)
            slow[:] = True
        fast_parts.append(fr[~slow])
        slow_parts.append(fr[slow])
        unit_parts.append([u[~slow] for u in units])
    fidx = np.concatenate(fast_parts)
    f_units = [np.concatenate([p[k] for p in unit_parts]) for k in range(9)]
    # veh ext alm fco fcn pro prn cel ceN, fidx: the fast frames (2016 first, then 2025)
    rows = []  # (first frame, completing frame, veh, ext, alm, fco, fcn, pro, prn, pieces)
    groups: dict = {}
    joined: list[int] = []  # frames whose pieces went into a later frame's row
    todo = np.sort(np.concatenate(slow_parts))
    for i, s, end, is25 in zip(todo.tolist(), starts[todo].tolist(),
                               (starts[todo] + HEADER_LEN + dlen[todo]).tolist(),
                               v25[todo].tolist()):
        try:
            veh, ext, alm, fco, fcn, pro, prn, pieces, total = _walk(big, s + 30, end, is25)
        except _Reject as r:
            code[i], detail[i] = _R[r.reason], r.detail
            continue
        if total < 0:
            rows.append((i, i, veh, ext, alm, fco, fcn, pro, prn, None))
            continue
        whole = _whole(pieces, total)
        if whole is not None:
            rows.append((i, i, veh, ext, alm, fco, fcn, pro, prn, whole))
            continue
        key = (big[s + 4:s + 21], big[s + 24:s + 30], int(cmd[i]))
        # one pack per instance; a piece whose start index an instance holds already belongs to
        # the next (an exact duplicate of the pack, interleaved)
        insts = groups.setdefault(key, [])
        starts_here = {pc[0] for pc in pieces}
        g = next((x for x in insts if not starts_here & x["starts"]), None)
        if g is None:
            g = {"frames": [], "units": [veh, ext, alm, fco, fcn, pro, prn], "pieces": [],
                 "starts": set(), "total": total}
            insts.append(g)
        else:  # a unit missing so far comes from this piece
            u = g["units"]
            for k_, val in ((0, veh), (1, ext), (2, alm), (5, pro)):
                if u[k_] < 0 and val >= 0:
                    u[k_] = val
                    if k_ == 2:
                        u[3], u[4] = fco, fcn
                    if k_ == 5:
                        u[6] = prn
        g["frames"].append(i)
        g["pieces"].extend(pieces)
        g["starts"] |= starts_here
        whole = _whole(g["pieces"], g["total"])
        if whole is not None:
            rows.append((g["frames"][0], i, *g["units"], whole))
            joined.extend(g["frames"][:-1])
            insts.remove(g)
    pending_groups = sorted(g["frames"] for insts in groups.values() for g in insts)
    pending = sorted(i for g in pending_groups for i in g)

    # the rows of both walks, in the order of their completing frames
    ns = len(rows)
    s_first = np.array([r[0] for r in rows], np.int64)
    s_done = np.array([r[1] for r in rows], np.int64)
    s_units = [np.array([r[2 + k] for r in rows], np.int64) for k in range(7)]
    first = np.concatenate([fidx, s_first])
    done = np.concatenate([fidx, s_done])
    order = np.argsort(done, kind="stable")
    first, done = first[order], done[order]
    veh, ext, alm, fco, fcn, pro, prn = (np.concatenate([f_units[k], s_units[k]])[order]
                                         for k in range(7))
    nr = len(first)
    # cell segments: one per fast row, the pieces of the slow ones
    seg_r = [np.flatnonzero(f_units[7] >= 0)]
    seg_o, seg_c = [f_units[7][seg_r[0]]], [f_units[8][seg_r[0]]]
    has_cells = np.concatenate([f_units[7] >= 0, np.array([r[9] is not None for r in rows],
                                                          bool)])[order]
    if ns:
        sr = [len(fidx) + j for j, r in enumerate(rows) if r[9] is not None for _ in r[9]]
        seg_r.append(np.array(sr, np.int64))
        seg_o.append(np.array([pc[1] for r in rows if r[9] is not None for pc in r[9]], np.int64))
        seg_c.append(np.array([pc[2] for r in rows if r[9] is not None for pc in r[9]], np.int64))
    rank = np.empty(nr, np.int64)
    rank[order] = np.arange(nr)
    sr_all = rank[np.concatenate(seg_r)] if nr else np.zeros(0, np.int64)
    so_all, sc_all = np.concatenate(seg_o), np.concatenate(seg_c)
    by = np.argsort(sr_all, kind="stable")
    sr_all, so_all, sc_all = sr_all[by], so_all[by], sc_all[by]

    r25 = v25[first]
    arrays: dict[str, pa.Array] = {}
    arrays["vin"] = pa.array(np.ascontiguousarray(vinb[first]).view("S17").ravel()
                             if nr else np.zeros(0, "S17")).cast(pa.string())
    arrays["cmd"] = pa.array(cmd[first], pa.int32())
    arrays["collect_time"] = pa.array(ftime[first], pa.timestamp("ms"))
    arrays["receive_time"] = pa.array((receive_ms[first] + BEIJING_OFFSET_MS).astype(
        "datetime64[ms]"), pa.timestamp("ms"))

    def put(name, unit, rel, width, absent=None):
        has = unit >= 0 if absent is None else (unit >= 0) & ~absent
        pos = np.where(has, unit, 0) + rel
        v = a[pos].astype(np.int32) if width == 1 else _u16(a, pos) if width == 2 else _u32(a, pos)
        arrays[name] = pa.array(v, REALTIME_ARROW_SCHEMA.field(name).type,
                                mask=None if has.all() else ~has)
        return v, has

    put("vehicle_status", veh, 0, 1)
    put("charge_status", veh, 1, 1)
    put("run_mode", veh, 2, 1)
    put("speed", veh, 3, 2)
    put("odometer", veh, 5, 4)
    put("total_voltage", veh, 9, 2)
    cur, has = put("total_current", veh, 11, 2)
    if r25.any():  # 2025: offset -3000 A (code 30000 = 0 A); the contract's is -1000 A
        marker = cur >= 0xFFFE
        cur = np.where(r25 & ~marker, cur - 20000, cur)
        arrays["total_current"] = pa.array(cur, pa.int32(), mask=~has)
    put("soc", veh, 13, 1)
    put("dcdc_status", veh, 14, 1)
    gear, has = put("gear", veh, 15, 1)
    if r25.any():  # 2025: bit 7 = gear position invalid (null); bits 0-5 as in 2016
        arrays["gear"] = pa.array(gear & 0x3F, pa.int32(), mask=~has | (r25 & (gear >= 0x80)))
    put("insulation_resistance", veh, 16, 2)
    put("accel_pedal", veh, 18, 1, absent=r25)  # no pedals in the 2025 vehicle unit
    put("brake_pedal", veh, 19, 1, absent=r25)
    for k, (name, w) in enumerate(
            (("max_volt_subsys", 1), ("max_volt_cell_no", 1), ("max_cell_voltage", 2),
             ("min_volt_subsys", 1), ("min_volt_cell_no", 1), ("min_cell_voltage", 2),
             ("max_temp_subsys", 1), ("max_temp_probe_no", 1), ("max_temp", 1),
             ("min_temp_subsys", 1), ("min_temp_probe_no", 1), ("min_temp", 1))):
        put(name, ext, (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13)[k], w)
    put("max_alarm_level", alm, 0, 1)
    put("general_alarm_flags", alm, 1, 4)
    ar = np.arange(nr)
    has_fc, has_pr = fco >= 0, pro >= 0
    arrays["battery_fault_codes"] = _list(a, ar[has_fc], fco[has_fc], fcn[has_fc], nr, 4,
                                          alm >= 0, pa.list_(pa.int64()))
    arrays["cell_voltages"] = _list(a, sr_all, so_all, sc_all, nr, 2, has_cells,
                                    pa.list_(pa.int32()))
    arrays["probe_temps"] = _list(a, ar[has_pr], pro[has_pr], prn[has_pr], nr, 1, has_pr,
                                  pa.list_(pa.int32()))
    realtime = pa.Table.from_arrays([arrays[f.name] for f in REALTIME_ARROW_SCHEMA],
                                    schema=REALTIME_ARROW_SCHEMA)

    # sessions: login and logout
    sess = np.flatnonzero((code == 0) & ((cmd == CMD_LOGIN) | (cmd == CMD_LOGOUT)))
    dpos = hs[sess] + HEADER_LEN
    sessions = pa.Table.from_arrays([
        pa.array(np.ascontiguousarray(vinb[sess]).view("S17").ravel() if sess.size
                 else np.zeros(0, "S17")).cast(pa.string()),
        pa.array(np.where(cmd[sess] == CMD_LOGIN, "login", "logout").astype(object), pa.string()),
        pa.array(ftime[sess], pa.timestamp("ms")),
        pa.array((receive_ms[sess] + BEIJING_OFFSET_MS).astype("datetime64[ms]"),
                 pa.timestamp("ms")),
        pa.array(_u16(a, dpos + 6) if sess.size else np.zeros(0, np.int32), pa.int32()),
        pa.array([big[p + 8:p + 28].decode("ascii", "replace").rstrip("\x00 ")
                  if c == CMD_LOGIN else None for p, c in zip(dpos.tolist(), cmd[sess].tolist())],
                 pa.string()),
        pa.array([topic] * sess.size, pa.string()),
        pa.array(np.full(sess.size, partition), pa.int32()),
        pa.array(offsets[sess], pa.int64()),
    ], schema=SESSION_SCHEMA)

    rej = np.flatnonzero(code != 0)
    reasons = [REASONS[c - 1] for c in code[rej].tolist()]
    rejected = pa.Table.from_arrays([
        pa.array((receive_ms[rej] + BEIJING_OFFSET_MS).astype("datetime64[ms]"),
                 pa.timestamp("ms")),
        pa.array(reasons, pa.string()),
        pa.array([detail.get(i, REJECT_REASONS[r]) for i, r in zip(rej.tolist(), reasons)],
                 pa.string()),
        pa.array([bytes(vinb[i]).decode("ascii") if full[i] and alnum[i] else None
                  for i in rej.tolist()], pa.string()),
        pa.array(np.where(full[rej], cmd[rej], 0), pa.int32(), mask=~full[rej]),
        pa.array([topic] * rej.size, pa.string()),
        pa.array(np.full(rej.size, partition), pa.int32()),
        pa.array(offsets[rej], pa.int64()),
        pa.array([frames[i].hex() for i in rej.tolist()], pa.string()),
    ], schema=REJECTED_SCHEMA)
    counts: dict[str, int] = {}
    for c, k in zip(*np.unique(cmd[code == 0], return_counts=True)):
        counts[f"cmd_{int(c):#04x}"] = int(k)
    for r_ in reasons:
        counts[f"rejected_{r_}"] = counts.get(f"rejected_{r_}", 0) + 1
    return Decoded(realtime, done, rejected, sessions, pending, pending_groups, counts,
                   sorted(joined))


def reject_frames(frames: list[bytes], why: str, receive_ms, topic: str, partition: int,
                  offsets) -> pa.Table:
    """Rejected-frame rows for frames the caller gives up on (e.g. ``pack_incomplete``)."""
    n = len(frames)
    vin = [f[4:21].decode("ascii", "replace") if len(f) >= FRAME_OVERHEAD else None
           for f in frames]
    return pa.Table.from_arrays([
        pa.array((np.asarray(receive_ms, np.int64) + BEIJING_OFFSET_MS).astype("datetime64[ms]"),
                 pa.timestamp("ms")),
        pa.array([why] * n, pa.string()),
        pa.array([REJECT_REASONS[why]] * n, pa.string()),
        pa.array(vin, pa.string()),
        pa.array([f[2] if len(f) > 2 else None for f in frames], pa.int32()),
        pa.array([topic] * n, pa.string()),
        pa.array(np.full(n, partition), pa.int32()),
        pa.array(np.asarray(offsets, np.int64), pa.int64()),
        pa.array([f.hex() for f in frames], pa.string()),
    ], schema=REJECTED_SCHEMA)


def decode_frame(frame: bytes, verify_bcc: bool = True) -> dict:
    """One frame: {'reason': ..., 'detail': ...} when rejected, else the landing row (raw codes)
    or, for login/logout, the session row; heartbeat and time sync: {'cmd': ...}."""
    d = decode_batch([frame], verify_bcc=verify_bcc)
    if d.rejected.num_rows:
        return d.rejected.select(["reason", "detail"]).to_pylist()[0]
    if d.realtime.num_rows:
        return d.realtime.to_pylist()[0]
    if d.sessions.num_rows:
        return d.sessions.to_pylist()[0]
    if d.pending:
        return {"pending": True}
    return {"cmd": frame[2]}


# --------------------------------------------------------------------------------------------
# encoder: the simulated T-BOX (GB/T 32960.3-2016 layout)
# --------------------------------------------------------------------------------------------


def bcc(data: bytes) -> int:
    x = 0
    for c in data:
        x ^= c
    return x


def _frame(cmd: int, vin: str, data: bytes, start: bytes = b"##") -> bytes:
    body = bytes([cmd, RESPONSE_COMMAND]) + vin.encode("ascii") + bytes([ENC_NONE]) \
        + len(data).to_bytes(2, "big") + data
    return start + body + bytes([bcc(body)])


def _time6(t) -> bytes:
    return bytes([t.year - 2000, t.month, t.day, t.hour, t.minute, t.second])


def encode_login(vin: str, t, serial_no: int, iccid: str = "89860000000000000000") -> bytes:
    """A 2016 vehicle login (0x01): time, serial number, ICCID, no pack codes."""
    return _frame(CMD_LOGIN, vin, _time6(t) + serial_no.to_bytes(2, "big")
                  + iccid.encode("ascii")[:20].ljust(20, b"0") + bytes([0, 0]))


def encode_logout(vin: str, t, serial_no: int) -> bytes:
    return _frame(CMD_LOGOUT, vin, _time6(t) + serial_no.to_bytes(2, "big"))


def encode_heartbeat(vin: str) -> bytes:
    return _frame(CMD_HEARTBEAT, vin, b"")


class _Mat:
    """Frames of one layout as rows of a uint8 matrix, written column block by column block."""

    def __init__(self, n: int, data_len: int) -> None:
        self.m = np.zeros((n, FRAME_OVERHEAD + data_len), np.uint8)
        self.p = 0

    def put(self, values, width: int) -> None:
        v = np.asarray(values, np.int64)
        if v.size and (v.min() < 0 or v.max() >= 1 << (8 * width)):
            raise ValueError(f"value out of range for a {width}-byte field: "
                             f"{v.min()}..{v.max()}")
        for k in range(width):
            self.m[:, self.p + k] = (v >> (8 * (width - 1 - k))) & 0xFF
        self.p += width

    def raw(self, block: np.ndarray) -> None:
        self.m[:, self.p:self.p + block.shape[1]] = block
        self.p += block.shape[1]


def _np(col: pa.ChunkedArray, what: str) -> np.ndarray:
    if col.null_count:
        raise ValueError(f"{what}: the encoder writes whole units and takes no nulls")
    return col.to_numpy()


def encode_realtime(table: pa.Table, max_cells_per_frame: int = MAX_CELLS_PER_FRAME
                    ) -> tuple[list[bytes], np.ndarray]:
    """Landing rows (landing.REALTIME_SCHEMA, no nulls) to 2016 real-time frames (command = the
    row's cmd, 2 or 3): units 0x01, 0x06, 0x07, 0x08 (subsystem 1), 0x09 (subsystem 1). A pack
    of more than ``max_cells_per_frame`` cells is split: the first frame carries every unit and
    the first cells, the next frames the same time and the following cells.

    Returns the frames and, per frame, the row it encodes (split rows: consecutive frames)."""
    n = table.num_rows
    c = {name: _np(table.column(name), name) for name in REALTIME_ARROW_SCHEMA.names
         if name not in ("vin", "battery_fault_codes", "cell_voltages", "probe_temps")}
    vins = np.array(table.column("vin").to_pylist(), "S17")
    if n and (np.char.str_len(vins) != 17).any():
        raise ValueError("every VIN must be 17 characters")
    vin_mat = vins.view(np.uint8).reshape(n, 17)

    def lists(name):
        arr = table.column(name).combine_chunks()
        if arr.null_count:
            raise ValueError(f"{name}: the encoder takes no nulls")
        off = arr.offsets.to_numpy()
        return arr.values.to_numpy(), off

    cv, co = lists("cell_voltages")
    pv, po = lists("probe_temps")
    fv, fo = lists("battery_fault_codes")
    ncell, nprobe, nfault = np.diff(co), np.diff(po), np.diff(fo)
    ct = c["collect_time"].astype("datetime64[s]")
    day = ct.astype("datetime64[D]")
    mon = ct.astype("datetime64[M]")
    tparts = [ct.astype("datetime64[Y]").astype(np.int64) + 1970 - 2000,
              mon.astype(np.int64) % 12 + 1,
              (day - mon.astype("datetime64[D]")).astype(np.int64) + 1]
    sod = (ct - day).astype(np.int64)
    tparts += [sod // 3600, sod // 60 % 60, sod % 60]
    out: list[tuple[int, int, bytes]] = []  # (row, piece, frame)
    key = np.stack([ncell, nprobe, nfault], axis=1) if n else np.zeros((0, 3), np.int64)
    groups, inv = np.unique(key, axis=0, return_inverse=True) if n else (key, np.zeros(0, int))
    for g, (nc, npb, nf) in enumerate(groups.tolist()):
        rows = np.flatnonzero(inv.ravel() == g)
        cells = cv[co[rows][:, None] + np.arange(nc)]
        probes = pv[po[rows][:, None] + np.arange(npb)]
        faults = fv[fo[rows][:, None] + np.arange(nf)]
        step = max(1, min(max_cells_per_frame, 255))
        cuts = list(range(0, max(nc, 1), step)) if nc > step else [0]
        for piece, c0 in enumerate(cuts):
            m = min(nc, c0 + step) - c0 if nc else 0
            head = piece == 0
            dl = 6 + 1 + 1 + 10 + 2 * m
            if head:
                dl += 21 + 15 + (1 + 5 + 1 + 4 * nf + 3) + (1 + 1 + 3 + npb)
            f = _Mat(len(rows), dl)
            f.raw(np.frombuffer(b"##", np.uint8)[None, :].repeat(len(rows), 0))
            f.put(c["cmd"][rows], 1)
            f.put(np.full(len(rows), RESPONSE_COMMAND), 1)
            f.raw(vin_mat[rows])
            f.put(np.full(len(rows), ENC_NONE), 1)
            f.put(np.full(len(rows), dl), 2)
            for part in tparts:
                f.put(part[rows], 1)
            if head:
                f.put(np.full(len(rows), 1), 1)
                for name, w in (("vehicle_status", 1), ("charge_status", 1), ("run_mode", 1),
                                ("speed", 2), ("odometer", 4), ("total_voltage", 2),
                                ("total_current", 2), ("soc", 1), ("dcdc_status", 1),
                                ("gear", 1), ("insulation_resistance", 2), ("accel_pedal", 1),
                                ("brake_pedal", 1)):
                    f.put(c[name][rows], w)
                f.put(np.full(len(rows), 6), 1)
                for name, w in (("max_volt_subsys", 1), ("max_volt_cell_no", 1),
                                ("max_cell_voltage", 2), ("min_volt_subsys", 1),
                                ("min_volt_cell_no", 1), ("min_cell_voltage", 2),
                                ("max_temp_subsys", 1), ("max_temp_probe_no", 1), ("max_temp", 1),
                                ("min_temp_subsys", 1), ("min_temp_probe_no", 1), ("min_temp", 1)):
                    f.put(c[name][rows], w)
                f.put(np.full(len(rows), 7), 1)
                f.put(c["max_alarm_level"][rows], 1)
                f.put(c["general_alarm_flags"][rows], 4)
                f.put(np.full(len(rows), nf), 1)
                for k in range(nf):
                    f.put(faults[:, k], 4)
                for _ in range(3):  # motor, engine, other fault lists: empty
                    f.put(np.zeros(len(rows)), 1)
            f.put(np.full(len(rows), 8), 1)
            f.put(np.ones(len(rows)), 1)  # one subsystem
            f.put(np.ones(len(rows)), 1)  # subsystem 1
            f.put(c["total_voltage"][rows], 2)
            f.put(c["total_current"][rows], 2)
            f.put(np.full(len(rows), nc), 2)
            f.put(np.full(len(rows), c0 + 1), 2)
            f.put(np.full(len(rows), m), 1)
            if m:
                blk = cells[:, c0:c0 + m]
                if blk.min() < 0 or blk.max() > 0xFFFF:
                    raise ValueError("cell voltage out of range for a WORD")
                f.raw(np.ascontiguousarray(blk.astype(">u2")).view(np.uint8).reshape(len(rows),
                                                                                      2 * m))
            if head:
                f.put(np.full(len(rows), 9), 1)
                f.put(np.ones(len(rows)), 1)
                f.put(np.ones(len(rows)), 1)
                f.put(np.full(len(rows), npb), 2)
                for k in range(npb):
                    f.put(probes[:, k], 1)
            assert f.p == HEADER_LEN + dl, (f.p, dl)
            f.m[:, -1] = np.bitwise_xor.reduce(f.m[:, 2:-1], axis=1)
            buf = f.m.tobytes()
            w = f.m.shape[1]
            out.extend((int(r), piece, buf[k * w:(k + 1) * w]) for k, r in enumerate(rows))
    out.sort(key=lambda x: (x[0], x[1]))
    return [x[2] for x in out], np.array([x[0] for x in out], np.int64)
