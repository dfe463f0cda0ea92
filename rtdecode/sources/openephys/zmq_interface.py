"""Client of the Open Ephys ZMQ Interface plugin (current protocol, REFERENCES C).

The messages, their decoder and encoders are in `zmq_interface_wire`. The client SUBscribes to the
plugin's data port and heartbeats its REP socket at data_port+1: it sends
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

A stream's channel count may change mid-session (a channel map, a probe added in the GUI): a block
is complete when it holds the channels of the stream's last complete block; two blocks in a row
with the same fewer channels are a new channel count (`layout_changes[stream]`), not lost messages
(the first of them is handed out incomplete); a channel arriving for a block already handed out
(the stream grew) is dropped (`late_channels[stream]`) and the count learnt again from the next
block.
"""

from __future__ import annotations

import json
import logging
import time
import uuid as uuid_mod
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import zmq

from rtdecode.sources.openephys import OpenEphysProtocolError
from rtdecode.sources.openephys.zmq_interface_wire import MAX_MESSAGE_BYTES, ContinuousChunk, parse_message
from rtdecode.sources.redial import Redial
from rtdecode.sources.rejects import Rejects

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- reassembly

MAX_STREAMS = 16  # streams the client keeps state for; more are refused (reason 'limit')
MAX_PENDING_CHANNELS = 4096  # channels of one block waiting for the rest
MAX_PENDING_BYTES = 64 * 2**20  # samples held by all blocks waiting for channels
MAX_MESSAGE_GAP = 1_000_000  # a message_num jump beyond this is a restart, not a loss
MAX_SAMPLE_GAP_S = 60.0  # a sample_num jump of more than this (seconds of samples) is a restart, not a loss


def _count(counter: Counter, key: str) -> None:
    """counter[key] += 1, for at most MAX_STREAMS keys (stream names are the sender's text)."""
    if key in counter or len(counter) < MAX_STREAMS:
        counter[key] += 1


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
        self.n_channels = 0  # the channels of this stream's blocks (0: not known, learnt from the next block)
        self.next_sample: int | None = None
        self.last_nums: list[int] | None = None  # the channels of the last block handed out
        self.last_sample: int | None = None  # its sample_num


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
        self.layout_changes: Counter[str] = Counter()  # a stream's channel count changed (per stream)
        self.late_channels: Counter[str] = Counter()  # channel messages of a block already handed out (dropped)
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
        if (p is None and st.last_sample == d["sample_num"] and st.last_nums is not None
                and d["channel_num"] not in st.last_nums and not self.expected_channels):
            # a channel of a block already handed out: the stream has more channels than before; its
            # channel count is learnt again from the next block (handed out when the one after starts)
            st.n_channels = 0
            _count(self.late_channels, d["stream"])
            self._warn("late", "ZMQ Interface: stream %s sent channel %d of the block at sample %d after the block's "
                        "%d channels: its channel count changed; learning it again", d["stream"], d["channel_num"],
                        d["sample_num"], len(st.last_nums))
            return
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
        if not complete and not self.expected_channels and st.last_nums == nums:
            # two blocks in a row with the same fewer channels: the stream's channel count changed
            # (a channel map or a probe changed in the GUI), not a lost message
            complete = True
            _count(self.layout_changes, stream)
            self._warn("layout", "ZMQ Interface: stream %s now sends %d channels (was %d)", stream, len(nums), want)
        if not complete:
            self.incomplete_chunks += 1
            self._warn("incomplete", "ZMQ Interface: block at sample %d of stream %s has %d of %d channels",
                        p.sample_num, stream, len(nums), want)
        else:
            st.n_channels = len(nums)
        st.last_nums, st.last_sample = nums, p.sample_num
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
                "layout_changes": dict(self.layout_changes), "late_channels": dict(self.late_channels),
                "heartbeats_sent": self.heartbeats_sent, "heartbeats_answered": self.heartbeats_answered,
                "heartbeat_resets": self.heartbeat_resets, "bad_heartbeat_replies": self.bad_heartbeat_replies,
                "redials": self.redial.redials}

    def close(self) -> None:
        self.redial.close()
        self.sock.close(linger=0)
        if self.hb is not None:
            self.hb.close(linger=0)
            self.hb = None
