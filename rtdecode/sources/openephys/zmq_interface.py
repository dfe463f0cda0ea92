"""Client of the Open Ephys ZMQ Interface plugin (current protocol, REFERENCES C).

The plugin publishes on a PUB socket (`data_port`, default 5556) multipart messages:

  1. envelope `DATA\\0` (continuous) or `EVENT\\0` (TTL events and spikes), NUL included
  2. JSON header with `message_num` (+1 per message, any kind) and `type` (`data`, `event`, `spike`)
  3. payload: float32 samples of ONE channel (data), 10 bytes line/state/word (TTL), or the float32
     waveform num_channels x num_samples (spike)

and answers heartbeats on a REP socket at data_port+1. A client sends
`{"application", "uuid", "type": "heartbeat"}` every 2 s (silent > 5 s: marked dead); the reply is a
plain string (`heartbeat received`). A REQ that gets no reply in time is closed and reopened (lazy
reconnect), since a REQ socket stuck waiting for a reply can never send again.

`ZmqInterfaceClient.poll()` returns what completed: `ContinuousChunk` (channels x samples float32,
one per processing block and stream, reassembled from the per-channel messages, keyed by
`sample_num`), `TtlEvent`, `SpikeEvent`. Lost messages (`message_num` gaps) and lost samples
(`sample_num` gaps per stream) are counted. A malformed message is counted under `rejected` with its
reason and logged (at most once per reason per second), never raised.

A plugin (or GUI) restart is followed without restarting the client: when `message_num` goes back
(the plugin counts again from 1) the client counts a restart (`message_restarts`), logs it, hands
out the blocks still waiting for channels and forgets what it learnt of every stream (channel
counts, next sample), so neither a bogus message gap nor a bogus sample gap is counted. A stream
whose `sample_num` goes back without a `message_num` reset (acquisition stopped and started again)
is counted under `sample_restarts[stream]`, also without a gap.

The encoders `encode_data`, `encode_ttl`, `encode_spike` build the plugin's exact bytes; the emulator
and the tests use them.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import time
import uuid as uuid_mod
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import zmq

from rtdecode.sources import safejson
from rtdecode.sources.openephys import OpenEphysProtocolError
from rtdecode.sources.redial import Redial
from rtdecode.sources.rejects import Rejects

log = logging.getLogger(__name__)

DATA_ENVELOPE = b"DATA\x00"
EVENT_ENVELOPE = b"EVENT\x00"
TTL_TYPE = 3  # content.type of a TTL event
TTL_PAYLOAD = struct.Struct("<BBQ")  # line (0-based), state, TTL word: 10 bytes
HEARTBEAT_REPLY = "heartbeat received"


# ---------------------------------------------------------------- what the client hands out

@dataclass
class ContinuousChunk:
    stream: str
    sample_num: int  # first sample of the block (absolute, counted from the start of acquisition)
    sample_rate: float
    channel_nums: list[int]  # row i of `data` is channel channel_nums[i]
    channel_names: list[str]
    data: np.ndarray  # float32, channels x samples (µV as the plugin sends them)
    timestamp_ms: float = 0.0
    complete: bool = True  # False if fewer channels arrived than the stream usually has

    @property
    def num_samples(self) -> int:
        return self.data.shape[1]


@dataclass
class TtlEvent:
    stream: str
    source_node: int
    sample_num: int
    line: int  # 0-based
    state: int  # 1 on, 0 off
    word: int
    timestamp_ms: float = 0.0


@dataclass
class SpikeEvent:
    stream: str
    source_node: int
    electrode: str
    sample_num: int
    sorted_id: int
    threshold: list
    waveform: np.ndarray  # float32, num_channels x num_samples
    timestamp_ms: float = 0.0


# ---------------------------------------------------------------- encoders (the plugin's bytes)

def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def encode_data(message_num: int, stream: str, channel_num: int, channel_name: str, sample_num: int,
                sample_rate: float, samples: np.ndarray, timestamp_ms: float) -> list[bytes]:
    payload = np.ascontiguousarray(samples, dtype="<f4")
    header = {"message_num": int(message_num), "type": "data",
              "content": {"stream": stream, "channel_num": int(channel_num), "channel_name": channel_name,
                          "num_samples": int(payload.size), "sample_num": int(sample_num),
                          "sample_rate": float(sample_rate)},
              "data_size": int(payload.size * 4), "timestamp": timestamp_ms}
    return [DATA_ENVELOPE, _dumps(header), payload.tobytes()]


def encode_ttl(message_num: int, stream: str, source_node: int, sample_num: int, line: int, state: int,
               word: int, timestamp_ms: float) -> list[bytes]:
    header = {"message_num": int(message_num), "type": "event",
              "content": {"stream": stream, "source_node": int(source_node), "type": TTL_TYPE,
                          "sample_num": int(sample_num)},
              "data_size": TTL_PAYLOAD.size, "timestamp": timestamp_ms}
    return [EVENT_ENVELOPE, _dumps(header), TTL_PAYLOAD.pack(int(line), int(state), int(word))]


def encode_spike(message_num: int, stream: str, source_node: int, electrode: str, sample_num: int,
                 sorted_id: int, threshold: list, waveform: np.ndarray, timestamp_ms: float) -> list[bytes]:
    wf = np.ascontiguousarray(waveform, dtype="<f4")
    header = {"message_num": int(message_num), "type": "spike",
              "spike": {"stream": stream, "source_node": int(source_node), "electrode": electrode,
                        "sample_num": int(sample_num), "num_channels": int(wf.shape[0]),
                        "num_samples": int(wf.shape[1]), "sorted_id": int(sorted_id),
                        "threshold": [float(x) for x in threshold]},
              "timestamp": timestamp_ms}
    return [EVENT_ENVELOPE, _dumps(header), wf.tobytes()]


# ---------------------------------------------------------------- decoder

MAX_HEADER = 64 * 1024  # bytes of header JSON
MAX_DEPTH = 8
MAX_SAMPLES = 2**18  # samples of one channel in one block (the GUI's blocks are a few thousand)
MAX_CHANNEL_NUM = 65535
MAX_SPIKE_CHANNELS = 1024
MAX_SPIKE_SAMPLES = 4096
MAX_NAME = 256  # characters of a stream, channel or electrode name
MAX_STREAMS = 16  # streams the client keeps state for; more are refused (reason 'limit')
MAX_PENDING_CHANNELS = 4096  # channels of one block waiting for the rest
MAX_PENDING_BYTES = 64 * 2**20  # samples held by all blocks waiting for channels
MAX_MESSAGE_GAP = 1_000_000  # a message_num jump beyond this is a restart, not a loss
MAX_SAMPLE_GAP_S = 60.0  # a sample_num jump of more than this (seconds of samples) is a restart, not a loss
SAMPLE_RANGE = (-(2**62), 2**62)
MAX_MESSAGE_BYTES = 4 * MAX_SAMPLES + MAX_HEADER  # ZMQ_MAXMSGSIZE of the data socket


def _int(d: dict, key: str, where: str, lo: int = 0, hi: int = 2**53, **kw) -> int:
    return safejson.integer(d, key, where, lo, hi, error=OpenEphysProtocolError, **kw)


def _num(d: dict, key: str, where: str, lo: float = -math.inf, hi: float = math.inf, **kw) -> float:
    return safejson.number(d, key, where, lo, hi, error=OpenEphysProtocolError, **kw)


def _str(d: dict, key: str, where: str, **kw) -> str:
    return safejson.string(d, key, where, MAX_NAME, error=OpenEphysProtocolError, **kw)


def _err(text: str, reason: str) -> OpenEphysProtocolError:
    return OpenEphysProtocolError(text, reason=reason)


def parse_message(frames: list[bytes]):
    """Decode one ZMQ Interface message -> (message_num, kind, item).

    kind is 'data' (item: dict with stream, channel_num, channel_name, sample_num, sample_rate,
    samples float32, timestamp_ms), 'ttl' (TtlEvent), 'event' (a non-TTL event: header dict) or
    'spike' (SpikeEvent). Every field is type- and range-checked; the header is parsed only when it
    is at most MAX_HEADER bytes and MAX_DEPTH deep. Raises OpenEphysProtocolError (with a fixed
    `reason`) saying what is wrong.
    """
    if not isinstance(frames, (list, tuple)) or len(frames) not in (2, 3):
        raise _err(f"expected 2 or 3 frames (envelope, header, payload), got "
                   f"{len(frames) if isinstance(frames, (list, tuple)) else '?'}", "framing")
    env = bytes(frames[0])
    if env not in (DATA_ENVELOPE, EVENT_ENVELOPE):
        raise _err(f"unknown envelope {env[:16]!r}; expected b'DATA\\x00' or b'EVENT\\x00'", "topic")
    header = safejson.loads(bytes(frames[1]), MAX_HEADER, MAX_DEPTH, "header", error=OpenEphysProtocolError)
    if not isinstance(header, dict):
        raise _err(f"header must be a JSON object, got {type(header).__name__}", "not_json")
    if "message_no" in header and "message_num" not in header:
        raise _err("pre-0.5 ZMQ Interface protocol ('message_no'); update the plugin", "version")
    num = _int(header, "message_num", "header")
    kind = header.get("type")
    payload = bytes(frames[2]) if len(frames) == 3 else b""
    ts = header.get("timestamp", 0)
    ok = isinstance(ts, (int, float)) and not isinstance(ts, bool) and abs(ts) < 1e300 and math.isfinite(float(ts))
    ts = float(ts) if ok else 0.0
    if kind == "data":
        if env != DATA_ENVELOPE:
            raise _err("data message under an EVENT envelope", "topic")
        c = header.get("content")
        if not isinstance(c, dict):
            raise _err("data: header lacks the 'content' object", "field")
        n = _int(c, "num_samples", "data", 0, MAX_SAMPLES)
        if len(payload) != n * 4:
            raise _err(f"data: payload is {len(payload)} bytes, {n} float32 samples need {n * 4}", "payload")
        ds = header.get("data_size")
        if ds is not None and (not isinstance(ds, int) or isinstance(ds, bool) or ds != n * 4):
            raise _err(f"data: data_size {safejson._short(ds)} disagrees with num_samples {n}", "field")
        item = {"stream": _str(c, "stream", "data"),
                "channel_num": _int(c, "channel_num", "data", 0, MAX_CHANNEL_NUM),
                "channel_name": _str(c, "channel_name", "data", default="", required=False),
                "sample_num": _int(c, "sample_num", "data", *SAMPLE_RANGE),
                "sample_rate": _num(c, "sample_rate", "data", 1e-3, 1e8),
                "samples": np.frombuffer(payload, dtype="<f4"), "timestamp_ms": ts}
        return num, "data", item
    if env != EVENT_ENVELOPE:
        raise _err(f"{safejson._short(kind)} message under a DATA envelope", "topic")
    if kind == "event":
        c = header.get("content")
        if not isinstance(c, dict):
            raise _err("event: header lacks the 'content' object", "field")
        etype = c.get("type")
        if etype != TTL_TYPE or isinstance(etype, bool):
            return num, "event", header  # other event types (text, ...) pass through undecoded
        if len(payload) != TTL_PAYLOAD.size:
            raise _err(f"ttl: payload is {len(payload)} bytes, expected {TTL_PAYLOAD.size}", "payload")
        line, state, word = TTL_PAYLOAD.unpack(payload)
        return num, "ttl", TtlEvent(_str(c, "stream", "ttl", default="", required=False),
                                    _int(c, "source_node", "ttl", -1, 2**31, default=-1, required=False),
                                    _int(c, "sample_num", "ttl", *SAMPLE_RANGE), line, state, word, ts)
    if kind == "spike":
        s = header.get("spike")
        if not isinstance(s, dict):
            raise _err("spike: header lacks the 'spike' object (fields are under 'spike')", "field")
        nch = _int(s, "num_channels", "spike", 0, MAX_SPIKE_CHANNELS)
        ns = _int(s, "num_samples", "spike", 0, MAX_SPIKE_SAMPLES)
        if len(payload) != nch * ns * 4:
            raise _err(f"spike: payload is {len(payload)} bytes, {nch} x {ns} float32 need {nch * ns * 4}", "payload")
        thr = s.get("threshold", [])
        if not isinstance(thr, list) or len(thr) > MAX_SPIKE_CHANNELS or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) < 1e300 and math.isfinite(x)
                for x in thr):
            raise _err(f"spike: 'threshold' must be a list of at most {MAX_SPIKE_CHANNELS} finite numbers", "field")
        return num, "spike", SpikeEvent(_str(s, "stream", "spike", default="", required=False),
                                        _int(s, "source_node", "spike", -1, 2**31, default=-1, required=False),
                                        _str(s, "electrode", "spike", default="", required=False),
                                        _int(s, "sample_num", "spike", *SAMPLE_RANGE),
                                        _int(s, "sorted_id", "spike", -(2**31), 2**31, default=0, required=False),
                                        [float(x) for x in thr],
                                        np.frombuffer(payload, dtype="<f4").reshape(nch, ns), ts)
    raise _err(f"unknown message type {safejson._short(kind)}", "topic")


# ---------------------------------------------------------------- reassembly

@dataclass
class _Pending:
    sample_num: int
    sample_rate: float
    num_samples: int
    timestamp_ms: float
    channels: dict = field(default_factory=dict)  # channel_num -> (name, samples)


class _StreamState:
    def __init__(self):
        self.pending: _Pending | None = None
        self.n_channels = 0  # the most channels seen in one block of this stream
        self.next_sample: int | None = None


class ZmqInterfaceClient:
    """SUB on the plugin's data port plus a REQ heartbeat to data port+1.

    `poll(timeout_ms)` -> list of ContinuousChunk / TtlEvent / SpikeEvent (possibly empty).
    A block is complete when all channels the stream has shown so far arrived; the first block of a
    stream (channel count not known yet) is flushed when a block with another sample_num arrives,
    or by `flush()`.
    """

    def __init__(self, host: str = "127.0.0.1", data_port: int = 5556, heartbeat_port: int | None = None,
                 application: str = "rtdecode", uuid: str | None = None, heartbeat_interval_s: float = 2.0,
                 heartbeat_timeout_s: float = 1.0, n_channels: int | None = None, hwm: int = 10000,
                 context: zmq.Context | None = None, max_msg_bytes: int = MAX_MESSAGE_BYTES):
        self.ctx = context or zmq.Context.instance()
        self.data_url = f"tcp://{host}:{data_port}"
        self.hb_url = f"tcp://{host}:{heartbeat_port if heartbeat_port is not None else data_port + 1}"
        self.application = application
        self.uuid = uuid or str(uuid_mod.uuid4())
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.expected_channels = n_channels
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, int(max_msg_bytes))
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(self.data_url)
        self.redial = Redial(self.sock, self.data_url, "ZMQ Interface")
        self.hb: zmq.Socket | None = None
        self._hb_sent_at: float | None = None  # monotonic time of the outstanding heartbeat
        self._hb_next = 0.0  # send the first heartbeat at once
        self.heartbeats_sent = 0
        self.heartbeats_answered = 0
        self.heartbeat_resets = 0
        self.last_heartbeat_reply: str | None = None
        self.streams: dict[str, _StreamState] = {}
        self.last_message_num: int | None = None
        self.missing_messages = 0
        self.message_restarts = 0
        self.sample_restarts: Counter[str] = Counter()
        self.missing_samples: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.rejects = Rejects("ZMQ Interface", logger=log)
        self.rejected = self.rejects.counts
        self.bad_heartbeat_replies = 0
        self.incomplete_chunks = 0
        self._pending_bytes = 0
        self._warned: dict[str, int] = {}

    # ---------------------------------------------------------------- heartbeat
    def _open_hb(self) -> None:
        self.hb = self.ctx.socket(zmq.REQ)
        self.hb.setsockopt(zmq.LINGER, 0)
        self.hb.setsockopt(zmq.MAXMSGSIZE, 4096)  # the reply is a short string
        self.hb.connect(self.hb_url)

    def _reset_hb(self, why: str | None = None) -> None:
        if self.hb is not None:
            self.hb.close(linger=0)
        self.hb = None
        self._hb_sent_at = None
        self.heartbeat_resets += 1
        if self.heartbeat_resets <= 10 or self.heartbeat_resets % 100 == 0:
            log.warning("ZMQ Interface heartbeat: %s; socket reopened (%d reset(s))",
                        why or f"no reply from {self.hb_url} within {self.heartbeat_timeout_s:.1f} s",
                        self.heartbeat_resets)

    def _take_reply(self) -> None:
        """Read the heartbeat reply (all its parts: a multi-part reply would leave the REQ unable to
        send, EFSM); a reply that is not one short UTF-8 string is counted, not fatal."""
        parts = self.hb.recv_multipart()
        self._hb_sent_at = None
        if len(parts) != 1 or len(parts[0]) > 256:
            self.bad_heartbeat_replies += 1
            self.rejects.reject("framing", f"heartbeat reply of {len(parts)} part(s)")
        self.last_heartbeat_reply = bytes(parts[0][:256]).decode("utf-8", "replace")
        self.heartbeats_answered += 1

    def service_heartbeat(self, now: float | None = None) -> None:
        """Send a heartbeat when due, collect its reply, reset the REQ on timeout. Never blocks."""
        now = time.monotonic() if now is None else now
        self.redial.check()
        try:
            if self._hb_sent_at is not None:
                if self.hb.poll(0):
                    self._take_reply()
                elif now - self._hb_sent_at > self.heartbeat_timeout_s:
                    self._reset_hb()
            if self._hb_sent_at is None and now >= self._hb_next:
                if self.hb is None:
                    self._open_hb()
                msg = {"application": self.application, "uuid": self.uuid, "type": "heartbeat"}
                self.hb.send(json.dumps(msg).encode("utf-8"), zmq.NOBLOCK)
                self._hb_sent_at = now
                self._hb_next = now + self.heartbeat_interval_s
                self.heartbeats_sent += 1
        except zmq.ZMQError as exc:  # EFSM, EAGAIN, ...: a REQ in a bad state is reopened
            self._hb_next = now + self.heartbeat_interval_s
            self._reset_hb(f"heartbeat socket error ({exc})")

    def heartbeat(self, timeout_s: float | None = None) -> str | None:
        """Send one heartbeat now and wait for the reply; None (and a socket reset) on timeout."""
        timeout_s = self.heartbeat_timeout_s if timeout_s is None else timeout_s
        try:
            if self._hb_sent_at is not None:  # an outstanding one: wait for it first
                if not self.hb.poll(int(timeout_s * 1000)):
                    self._reset_hb()
                else:
                    self._take_reply()
            self._hb_next = 0.0
            self.service_heartbeat()
            if self.hb is not None and self._hb_sent_at is not None and self.hb.poll(int(timeout_s * 1000)):
                self.service_heartbeat()
                return self.last_heartbeat_reply
        except zmq.ZMQError as exc:
            self._reset_hb(f"heartbeat socket error ({exc})")
            return None
        self._reset_hb()
        return None

    # ---------------------------------------------------------------- data
    def poll(self, timeout_ms: int = 100, max_messages: int = 10000) -> list:
        """Receive what is there (waiting up to `timeout_ms` for the first message)."""
        self.service_heartbeat()
        out: list = []
        wait = timeout_ms
        for _ in range(max_messages):
            if not self.sock.poll(wait):
                break
            wait = 0
            self.handle(self.sock.recv_multipart(copy=True), out)
        self.service_heartbeat()
        return out

    def handle(self, frames: list[bytes], out: list) -> None:
        """Process one multipart message; completed items are appended to `out`."""
        try:
            num, kind, item = parse_message(frames)
        except OpenEphysProtocolError as exc:
            self.rejects.error(exc)
            return
        if self._see_message_num(num):
            self._restart(out)
        self.received[kind] += 1
        if kind == "data":
            self._add_data(item, out)
        elif kind in ("ttl", "spike"):
            out.append(item)

    def _see_message_num(self, num: int) -> bool:
        """Count lost messages; True if `num` went back (the plugin restarted its counter)."""
        last = self.last_message_num
        self.last_message_num = num
        if last is not None:
            if last + 1 < num <= last + 1 + MAX_MESSAGE_GAP:
                self.missing_messages += num - last - 1
                self._warn("lost", "ZMQ Interface: %d message(s) lost before message_num %d", num - last - 1, num)
            elif num <= last or num > last + 1 + MAX_MESSAGE_GAP:
                self.message_restarts += 1
                self._warn("restart", "ZMQ Interface: message_num went from %d to %d: the plugin restarted "
                            "(%d restart(s) so far); following the new stream", last, num, self.message_restarts)
                return True
        return False

    def _restart(self, out: list) -> None:
        """The sender restarted: hand out what was pending, forget the streams' state."""
        for stream, st in self.streams.items():
            self._flush_stream(stream, st, out)
        self.streams.clear()

    def _add_data(self, d: dict, out: list) -> None:
        st = self.streams.get(d["stream"])
        if st is None:
            if len(self.streams) >= MAX_STREAMS:
                self.rejects.reject("limit", f"data: more than {MAX_STREAMS} streams; stream ignored")
                return
            st = self.streams[d["stream"]] = _StreamState()
        p = st.pending
        if p is not None and (p.sample_num != d["sample_num"] or d["channel_num"] in p.channels):
            self._flush_stream(d["stream"], st, out)
            p = None
        size = d["samples"].nbytes
        if p is not None and (len(p.channels) >= MAX_PENDING_CHANNELS or self._pending_bytes + size > MAX_PENDING_BYTES):
            self.rejects.reject("limit", f"data: a block waiting for more than {MAX_PENDING_CHANNELS} channels or "
                                         f"{MAX_PENDING_BYTES} bytes; channel ignored")
            return
        if p is None:
            p = st.pending = _Pending(d["sample_num"], d["sample_rate"], d["samples"].size, d["timestamp_ms"])
        if d["samples"].size != p.num_samples:
            self.rejects.reject("payload", f"data: channel {d['channel_num']} has {d['samples'].size} samples, "
                                f"its block (sample_num {p.sample_num}) has {p.num_samples}")
            return
        p.channels[d["channel_num"]] = (d["channel_name"], d["samples"])
        self._pending_bytes += size
        want = self.expected_channels or st.n_channels
        if want and len(p.channels) >= want:
            self._flush_stream(d["stream"], st, out)

    def _flush_stream(self, stream: str, st: _StreamState, out: list) -> None:
        p = st.pending
        st.pending = None
        if p is None or not p.channels:
            return
        self._pending_bytes -= sum(v[1].nbytes for v in p.channels.values())
        nums = sorted(p.channels)
        data = np.empty((len(nums), p.num_samples), np.float32)
        for i, c in enumerate(nums):
            data[i] = p.channels[c][1]
        want = self.expected_channels or st.n_channels
        complete = len(nums) >= want
        if not complete:
            self.incomplete_chunks += 1
            self._warn("incomplete", "ZMQ Interface: block at sample %d of stream %s has %d of %d channels",
                        p.sample_num, stream, len(nums), want)
        st.n_channels = max(st.n_channels, len(nums))
        if st.next_sample is not None:
            if st.next_sample < p.sample_num <= st.next_sample + max(MAX_SAMPLE_GAP_S * p.sample_rate, p.num_samples):
                self.missing_samples[stream] += p.sample_num - st.next_sample
                self._warn("skipped", "ZMQ Interface: stream %s skipped %d samples before sample %d",
                            stream, p.sample_num - st.next_sample, p.sample_num)
            elif p.sample_num != st.next_sample:
                self.sample_restarts[stream] += 1
                self._warn("back", "ZMQ Interface: stream %s went back from sample %d to %d (acquisition restarted); "
                            "following it", stream, st.next_sample, p.sample_num)
        st.next_sample = p.sample_num + p.num_samples
        out.append(ContinuousChunk(stream, p.sample_num, p.sample_rate, nums,
                                   [p.channels[c][0] for c in nums], data, p.timestamp_ms, complete))

    def flush(self) -> list:
        """Hand out the blocks still waiting for channels (e.g. at the end of a recording)."""
        out: list = []
        for stream, st in self.streams.items():
            self._flush_stream(stream, st, out)
        return out

    @property
    def n_rejected(self) -> int:
        return self.rejects.total

    def _warn(self, kind: str, fmt: str, *args) -> None:
        """Log an event of a fixed `kind`: the first 10, then every 1000th (a sender cannot flood the log)."""
        n = self._warned[kind] = self._warned.get(kind, 0) + 1
        if n <= 10 or n % 1000 == 0:
            log.warning(fmt + (" [%d such events]" % n if n > 10 else ""), *args)

    def counts(self) -> dict:
        return {"received": dict(self.received), "rejected": self.n_rejected,
                "rejected_by_reason": dict(self.rejected), "missing_messages": self.missing_messages,
                "missing_samples": dict(self.missing_samples), "message_restarts": self.message_restarts,
                "sample_restarts": dict(self.sample_restarts), "incomplete_chunks": self.incomplete_chunks,
                "heartbeats_sent": self.heartbeats_sent, "heartbeats_answered": self.heartbeats_answered,
                "heartbeat_resets": self.heartbeat_resets, "bad_heartbeat_replies": self.bad_heartbeat_replies,
                "redials": self.redial.redials}

    def close(self) -> None:
        self.redial.close()
        self.sock.close(linger=0)
        if self.hb is not None:
            self.hb.close(linger=0)
            self.hb = None
