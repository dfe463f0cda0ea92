"""Open Ephys emulator: replays a Binary recording in the GUI's ZMQ Interface and Event Broadcaster
protocols, so that clients can be developed and tested without the GUI (REFERENCES C).

- ZMQ Interface: PUB on `data_port`; per processing block (`block_size` samples) one `DATA\\0`
  message per channel (float32 µV = int16 * bit_volts), then the block's TTL and spike `EVENT\\0`
  messages; `message_num` counts from 1 across all of them. REP on data_port+1 answers heartbeats
  like the plugin (`heartbeat received`; `JSON message could not be read` for bad JSON).
- Event Broadcaster (JSON format): PUB on `broadcaster_port`; uint16 type + JSON per TTL and spike.

Timing: a block is published when its last sample would have been acquired (`speed` 1 = real time,
2 = twice as fast, 0 = as fast as possible). Events are sent in the block holding their
`sample_num`; events before the first recorded sample go with the first block and those after the
last with the last block, so every TTL and spike of the files is sent exactly once.

Deviations from the GUI, all deliberate: the publishing sockets are XPUB (identical on the wire for a
SUB) so the emulator can wait for its first subscriber instead of losing the start; spike
`threshold` is not stored in Binary recordings and is sent as zeros. The CLI is
`drivers/openephys/emulator.py` (or `python -m rtdecode.sources.openephys.emulator`).
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import threading
import time
from pathlib import Path

import zmq

from rtdecode.errors import ConfigError, WireError
from rtdecode.sources import safejson
from rtdecode.sources.exposure import bound
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.recording import Recording, load_recording

log = logging.getLogger(__name__)


class Emulator:
    def __init__(self, recording: Recording | str | Path, host: str = "127.0.0.1", data_port: int = 0,
                 broadcaster_port: int | None = 0, speed: float = 1.0, block_size: int = 1024,
                 channels: list[int] | None = None, stream: int = 0, wait_subscriber_s: float = 10.0,
                 context: zmq.Context | None = None):
        self.rec = recording if isinstance(recording, Recording) else load_recording(recording)
        if not self.rec.continuous:
            raise ConfigError(f"{self.rec.path} holds no continuous stream to replay")
        if not 0 <= stream < len(self.rec.continuous):
            raise ConfigError(f"stream {stream} does not exist ({len(self.rec.continuous)} streams)")
        if block_size < 1:
            raise ConfigError(f"block_size must be >= 1, got {block_size}")
        self.cont = self.rec.continuous[stream]
        n_ch = self.cont.data.shape[1]
        self.channels = list(range(n_ch)) if channels is None else [int(c) for c in channels]
        if not all(0 <= c < n_ch for c in self.channels):
            raise ConfigError(f"channels must lie in 0..{n_ch - 1}, got {self.channels}")
        self.speed = float(speed)
        self.block_size = int(block_size)
        self._open(host, data_port, broadcaster_port, wait_subscriber_s, context)

    def _open(self, host: str, data_port: int, broadcaster_port: int | None, wait_subscriber_s: float,
              context: zmq.Context | None) -> None:
        """Bind the plugins' sockets (data PUB + heartbeat REP, Event Broadcaster PUB) and set up the
        heartbeat state; shared with publishers of other data in the same protocols
        (rtdecode.rig.probe, the virtual probe)."""
        self.wait_subscriber_s = wait_subscriber_s
        self.ctx = context or zmq.Context.instance()
        self.host = host
        self.data_sock, self.hb_sock, self.data_port = self._bind_pair(host, data_port)
        self.eb_sock = None
        self.broadcaster_port = None
        if broadcaster_port is not None:
            self.eb_sock = self._xpub()
            if broadcaster_port == 0:
                self.broadcaster_port = self.eb_sock.bind_to_random_port(f"tcp://{host}")
            else:
                self.eb_sock.bind(f"tcp://{host}:{broadcaster_port}")
                self.broadcaster_port = broadcaster_port
            bound(self.eb_sock, "the Open Ephys emulator (Event Broadcaster)")
        self.heartbeats: dict[str, dict] = {}  # uuid -> {"application", "last", "count"}
        self.stats: dict = {}
        self.blocks_sent = 0  # blocks published so far by the current run (progress, for tests and UIs)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None

    # ---------------------------------------------------------------- sockets
    def _xpub(self) -> zmq.Socket:
        s = self.ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.SNDHWM, 0)  # never drop: a replay must be complete
        s.setsockopt(zmq.LINGER, 2000)
        return s

    def _bind_pair(self, host: str, port: int):
        """Data PUB on `port` and heartbeat REP on port+1 (port 0: find a free pair)."""
        for _ in range(50):
            data = self._xpub()
            try:
                if port == 0:
                    p = data.bind_to_random_port(f"tcp://{host}")
                else:
                    data.bind(f"tcp://{host}:{port}")
                    p = port
            except zmq.ZMQError as exc:
                data.close(linger=0)
                raise ConfigError(f"cannot bind the data port {port} on {host}: {exc}") from None
            hb = self.ctx.socket(zmq.REP)
            hb.setsockopt(zmq.LINGER, 0)
            hb.setsockopt(zmq.MAXMSGSIZE, 4096)
            try:
                hb.bind(f"tcp://{host}:{p + 1}")
                bound(data, "the Open Ephys emulator (ZMQ Interface data)")
                bound(hb, "the Open Ephys emulator (heartbeat)")
                return data, hb, p
            except zmq.ZMQError as exc:
                hb.close(linger=0)
                data.close(linger=0)
                if port != 0:
                    raise ConfigError(f"cannot bind the heartbeat port {p + 1} on {host}: {exc}") from None
        raise ConfigError("no free pair of consecutive ports found for data and heartbeat")

    # ---------------------------------------------------------------- heartbeat (REP) thread
    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            if not self.hb_sock.poll(50):
                continue
            parts = self.hb_sock.recv_multipart()  # every part: REP must read the whole request
            try:
                msg = safejson.loads(parts[0], 4096, 4, "heartbeat") if len(parts) == 1 else None
                ok = isinstance(msg, dict)
            except WireError:
                ok, msg = False, {}
            if ok and msg.get("type") == "event":
                reply = "message correctly parsed"
            elif ok:
                reply = ziw.HEARTBEAT_REPLY
                key = str(msg.get("uuid", ""))[:64]
                if key in self.heartbeats or len(self.heartbeats) < 1000:  # bounded: clients choose uuids
                    entry = self.heartbeats.setdefault(key, {"application": str(msg.get("application"))[:64],
                                                             "count": 0})
                    entry["last"] = time.monotonic()
                    entry["count"] += 1
            else:
                reply = "JSON message could not be read"
            self.hb_sock.send(reply.encode("utf-8"))
        self.hb_sock.close(linger=0)

    # ---------------------------------------------------------------- replay
    def _events(self):
        """(sample_num, order, kind, stream index, item index), merged over all TTL and spike files."""
        lists = []
        for k, t in enumerate(self.rec.ttl):
            lists.append([(int(s), 0, "ttl", k, i) for i, s in enumerate(t.sample_numbers)])
        for k, s in enumerate(self.rec.spikes):
            lists.append([(int(x), 1, "spike", k, i) for i, x in enumerate(s.sample_numbers)])
        return list(heapq.merge(*(sorted(x) for x in lists)))

    def _wait_subscriber(self, sock: zmq.Socket, what: str) -> bool:
        if self.wait_subscriber_s <= 0:
            return True
        deadline = time.monotonic() + self.wait_subscriber_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if sock.poll(50) and sock.recv()[:1] == b"\x01":
                return True
        log.warning("emulator: no %s subscriber within %.1f s; publishing anyway", what, self.wait_subscriber_s)
        return False

    def run(self) -> dict:
        """Publish the whole recording (blocking). Returns counts and timing."""
        c = self.cont
        self._wait_subscriber(self.data_sock, "ZMQ Interface")
        if self.eb_sock is not None:
            self._wait_subscriber(self.eb_sock, "Event Broadcaster")
        time.sleep(0.05)  # let a second subscriber finish joining
        uv = c.microvolts(self.channels)  # channels x samples float32
        names = [c.channel_names[i] for i in self.channels]
        events = self._events()
        ev_i = 0
        n = uv.shape[1]
        first = int(c.sample_numbers[0])
        msg_num = 0
        counts = {"data": 0, "ttl": 0, "spike": 0, "broadcast": 0, "blocks": 0}
        self.blocks_sent = 0
        t0 = time.perf_counter()
        period = 0.0 if self.speed <= 0 else 1.0 / (c.sample_rate * self.speed)
        for b0 in range(0, n, self.block_size):
            if self._stop.is_set():
                break
            b1 = min(n, b0 + self.block_size)
            if period:
                delay = t0 + b1 * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            ts = round(time.time() * 1000.0, 3)
            s0 = int(c.sample_numbers[b0])
            for row, ch in enumerate(self.channels):
                msg_num += 1
                self.data_sock.send_multipart(ziw.encode_data(msg_num, c.stream, ch, names[row], s0, c.sample_rate,
                                                              uv[row, b0:b1], ts))
                counts["data"] += 1
            end = first + b1 if b1 < n else None  # last block: everything left
            while ev_i < len(events) and (end is None or events[ev_i][0] < end):
                sn, _, kind, k, i = events[ev_i]
                ev_i += 1
                msg_num += 1
                if kind == "ttl":
                    t = self.rec.ttl[k]
                    self.data_sock.send_multipart(ziw.encode_ttl(msg_num, t.stream, t.source_node, sn, int(t.lines[i]),
                                                                 int(t.states[i]), int(t.words[i]), ts))
                    if self.eb_sock is not None:
                        self.eb_sock.send_multipart(eb.encode_ttl(t.stream, t.source_node, t.sample_rate,
                                                                  t.channel_name, sn, int(t.lines[i]),
                                                                  bool(t.states[i])))
                else:
                    s = self.rec.spikes[k]
                    wf = s.waveform_uv(i)
                    self.data_sock.send_multipart(ziw.encode_spike(msg_num, s.stream, s.source_node, s.electrode, sn,
                                                                   int(s.clusters[i]), [0.0] * wf.shape[0], wf, ts))
                    if self.eb_sock is not None:
                        peak = min(wf.shape[1] - 1, s.pre_peak_samples + 1)
                        self.eb_sock.send_multipart(eb.encode_spike(s.stream, s.source_node, s.electrode,
                                                                    s.sample_rate, sn, int(s.clusters[i]),
                                                                    [-float(a) for a in wf[:, peak]]))
                counts[kind] += 1
                counts["broadcast"] += self.eb_sock is not None
            counts["blocks"] += 1
            self.blocks_sent = counts["blocks"]
        wall = time.perf_counter() - t0
        recorded = n / c.sample_rate
        self.stats = {**counts, "messages": msg_num, "wall_s": wall, "recording_s": recorded,
                      "x_real_time": recorded / wall if wall > 0 else float("inf"),
                      "data_port": self.data_port, "broadcaster_port": self.broadcaster_port}
        log.info("emulator: replayed %.2f s of recording in %.2f s (%d messages)", recorded, wall, msg_num)
        return self.stats

    def _run_safe(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # surfaced by wait()
            self._error = exc
            log.exception("emulator: replay failed")

    def start(self, replay: bool = True) -> Emulator:
        """Answer heartbeats in a thread and (if `replay`) publish the recording in another."""
        hb = threading.Thread(target=self._heartbeat_loop, name="oe-emulator-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)
        if replay:
            pub = threading.Thread(target=self._run_safe, name="oe-emulator-replay", daemon=True)
            pub.start()
            self._threads.append(pub)
        return self

    def wait(self, timeout_s: float | None = None) -> dict:
        """Wait for the replay thread to finish; re-raise its error."""
        for t in self._threads[1:]:
            t.join(timeout_s)
        if self._error is not None:
            raise self._error
        return self.stats

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2.0)
        if not self._threads:
            self.hb_sock.close(linger=0)
        self.data_sock.close()
        if self.eb_sock is not None:
            self.eb_sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Replay an Open Ephys Binary recording as the ZMQ Interface "
                                             "and Event Broadcaster plugins would publish it.")
    ap.add_argument("recording", help="folder holding structure.oebin (or a parent of it)")
    ap.add_argument("--host", default="127.0.0.1",
                    help="interface to bind (default 127.0.0.1; '*' for all, as the plugins do: a warning names the port)")
    ap.add_argument("--data-port", type=int, default=5556, help="ZMQ Interface data port; heartbeat on +1")
    ap.add_argument("--broadcaster-port", type=int, default=5558,
                    help="Event Broadcaster port (its default 5557 collides with the heartbeat port); -1: off")
    ap.add_argument("--speed", type=float, default=1.0, help="1 real time, 2 twice as fast, 0 as fast as possible")
    ap.add_argument("--block-size", type=int, default=1024, help="samples per processing block")
    ap.add_argument("--channels", default="", help="comma-separated 0-based channel indices (default: all)")
    ap.add_argument("--wait-subscriber", type=float, default=30.0, help="seconds to wait for a subscriber")
    ap.add_argument("--repeat", type=int, default=1, help="replay this many times")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    channels = [int(x) for x in args.channels.split(",") if x.strip()] or None
    emu = Emulator(args.recording, host=args.host, data_port=args.data_port,
                   broadcaster_port=None if args.broadcaster_port < 0 else args.broadcaster_port,
                   speed=args.speed, block_size=args.block_size, channels=channels,
                   wait_subscriber_s=args.wait_subscriber)
    emu.start(replay=False)
    try:
        for _ in range(max(1, args.repeat)):
            stats = emu.run()
            log.info("%s", json.dumps(stats))
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
