"""`rtdecode probe`: connect to a live source and report what arrives.

    rtdecode probe ADDRESS --protocol rtframe|openephys|eventbroadcaster|scanimage_zmq [--seconds S] [--idle S]
                   [--heartbeat-port P] [--json OUT]

ADDRESS is `tcp://HOST:PORT`, `HOST:PORT` or a bare `PORT` (host 127.0.0.1). For `openephys` it is
the ZMQ Interface plugin's data port; the heartbeat goes to `--heartbeat-port` (default port + 1)
and runs all the time the probe listens, so the plugin keeps the probe marked alive.

What is reported (also written as JSON with --json):
- rtframe: messages per topic, the shapes and dtypes seen per topic, `seq` gaps (`dropped`),
  sender restarts (`seq` went back), rejected messages by reason, `ended` (a `stats` message with
  `end: true` was seen), and `frame_sha256`: SHA-256 over the payloads of the `frame` messages, in
  the order received.
- openephys (ZMQ Interface): per stream its channels (numbers and names), sample rate, samples per
  channel, blocks, first/last sample, missing samples, sample-number restarts and `sha256`: SHA-256
  of the float32 samples received in channel-major order (each channel's whole received sequence,
  little-endian, channel after channel in channel_num order; spooled to temporary files past
  16 MiB per channel, so long probes do not fill memory); TTL events (per line and state), spikes
  (per electrode), lost messages (`message_num` gaps), sender restarts (`message_num` went back),
  rejected messages, heartbeats sent / answered.
- eventbroadcaster: TTL events and spikes as above, rejected messages, and restarts (a stream's
  sample number went back by more than one second of samples: the broadcaster has no counter).
- scanimage_zmq (ScanImage Premium's own stream; its message layout is an assumption, see
  rtdecode/sources/scanimage_zmq.py): frames, shapes and dtypes, the (channel, plane, roi) streams
  seen, the header keys seen, frames lost (frame-number gaps), acquisition restarts, rejected messages
  with `first_rejected` (the parts, their sizes and JSON keys of the first message that did not fit the
  assumed layout: what to change there), and `frame_sha256` as for rtframe.
- all: `events_sha256`, a SHA-256 over one text line per TTL (`ttl,stream,sample,line,state`) and
  per spike (`spike,stream,electrode,sample,sorted_id`) in the order received — the same lines for
  both Open Ephys protocols, so the two can be compared; wall time, time from the first to the last
  message (`active_s`), and for continuous data `x_real_time` (seconds of data / active_s).

When it stops: after `--seconds` (default 10), or, once data has arrived, when nothing has arrived
for `--idle` seconds (default 2; 0 turns this off). A sender that never sends anything keeps the
probe listening for the full `--seconds`. The exit status is 0 if anything arrived, 1 if nothing did.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import zmq

from rtdecode.sources import protocols, wire
from rtdecode.sources.address import parse_address
from rtdecode.sources.probe_tally import ChannelMajorHash, Clock, EventLog
from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- one listener per protocol
# (each named by its registry entry, rtdecode.sources.protocols: `probe`)

def listen_rtframe(endpoints: list[str], clock: Clock, ctx: zmq.Context, heartbeat_port: int | None = None) -> dict:
    """Protocol rtframe's listener (rtdecode.sources.protocols): every endpoint at once."""
    from rtdecode.sources.ingest import Ingest

    ing = Ingest(endpoints, topics=wire.TOPICS, hwm=1000, context=ctx, any_source=True)
    shapes: dict[str, Counter] = defaultdict(Counter)
    first_seq: list[int] = []
    sha = hashlib.sha256()
    acc = {"frame_bytes": 0, "ended": 0}

    def take(msg) -> None:
        key = f"{msg.header['dtype']} {msg.header['shape']}"
        if key not in shapes[msg.topic] and len(shapes[msg.topic]) >= 32:  # bounded: a sender chooses shapes
            key = "(other shapes)"
        shapes[msg.topic][key] += 1
        if not first_seq:
            first_seq.append(msg.seq)
        if msg.topic == "frame":
            payload = msg.array.tobytes()
            sha.update(payload)
            acc["frame_bytes"] += len(payload)
        elif msg.topic == "stats" and msg.header.get("end"):
            acc["ended"] += 1

    try:
        while not clock.done():
            msg = ing.receive(timeout_ms=50)
            if msg is not None:
                clock.saw()
                take(msg)
        while (msg := ing.receive(timeout_ms=0)) is not None:  # already queued: still received
            take(msg)
    finally:
        ing.close()
    c = ing.counts()
    return {"topics": {t: {"messages": n, "shapes": dict(shapes[t])} for t, n in sorted(ing.received.items())},
            "messages": sum(ing.received.values()), "dropped": c["dropped"], "restarts": c["restarts"],
            "rejected": c["rejected"], "rejected_by_reason": c["rejected_by_reason"], "ended": acc["ended"],
            "first_seq": first_seq[0] if first_seq else None, "last_seq": ing.gaps.last,
            "frames": ing.received.get("frame", 0), "frame_bytes": acc["frame_bytes"],
            "frame_sha256": sha.hexdigest()}


def listen_scanimage_zmq(endpoints: list[str], clock: Clock, ctx: zmq.Context,
                         heartbeat_port: int | None = None) -> dict:
    """Protocol scanimage_zmq's listener (rtdecode.sources.protocols): one endpoint."""
    from rtdecode.sources.scanimage_zmq import ScanImageZmqIngest

    ing = ScanImageZmqIngest(endpoints[0], hwm=100000, context=ctx)
    shapes: Counter[str] = Counter()
    streams: Counter[str] = Counter()
    keys: set[str] = set()
    sha = hashlib.sha256()
    acc = {"frame_bytes": 0}

    def take(msg) -> None:
        h = msg.header
        shapes[f"{h['dtype']} {h['shape']}"] += 1
        streams[f"channel {h['channel']} plane {h['plane']} roi {h['roi']}"] += 1
        keys.update(h["native"])
        payload = msg.array.tobytes()
        sha.update(payload)
        acc["frame_bytes"] += len(payload)

    try:
        while not clock.done():
            before = ing.received["frame"] + sum(ing.rejected.values())
            msg = ing.receive(timeout_ms=50)
            if msg is not None:
                take(msg)
            if ing.received["frame"] + sum(ing.rejected.values()) != before:
                clock.saw()
        while (msg := ing.receive(timeout_ms=0)) is not None:
            take(msg)
    finally:
        ing.close()
    c = ing.counts()
    return {"frames": ing.received["frame"], "messages": ing.received["frame"], "shapes": dict(shapes),
            "frame_streams": dict(sorted(streams.items())), "header_keys": sorted(keys),
            "dropped": c["dropped"], "restarts": c["restarts"], "rejected": c["rejected"],
            "rejected_by_reason": c["rejected_by_reason"], "first_rejected": ing.first_rejected,
            "frame_bytes": acc["frame_bytes"], "frame_sha256": sha.hexdigest()}


def listen_openephys(endpoints: list[str], clock: Clock, ctx: zmq.Context, heartbeat_port: int | None = None) -> dict:
    """Protocol openephys's listener (rtdecode.sources.protocols): the ZMQ Interface's data port, with
    the heartbeat running all the time it listens."""
    from rtdecode.sources.openephys import zmq_interface as zi
    from rtdecode.sources.openephys import zmq_interface_wire as ziw

    host, port = parse_address(endpoints[0])
    client = zi.ZmqInterfaceClient(host=host, data_port=port, heartbeat_port=heartbeat_port,
                                   application="rtdecode probe", context=ctx)
    events = EventLog()
    streams: dict[str, dict] = {}
    hashes: dict[str, ChannelMajorHash] = {}

    def take(items) -> None:
        for it in items:
            if isinstance(it, ziw.ContinuousChunk):
                s = streams.get(it.stream)
                if s is None:
                    s = streams[it.stream] = {"sample_rate": it.sample_rate, "channels": {}, "blocks": 0,
                                              "incomplete_blocks": 0, "first_sample": it.sample_num,
                                              "last_sample": None}
                    hashes[it.stream] = ChannelMajorHash()
                s["blocks"] += 1
                s["incomplete_blocks"] += not it.complete
                s["last_sample"] = it.sample_num + it.num_samples - 1
                for row, (ch, name) in enumerate(zip(it.channel_nums, it.channel_names)):
                    s["channels"].setdefault(ch, name)
                    hashes[it.stream].add(ch, it.data[row])
            elif isinstance(it, ziw.TtlEvent):
                events.add_ttl(it.stream, it.sample_num, it.line, it.state)
            elif isinstance(it, ziw.SpikeEvent):
                events.add_spike(it.stream, it.electrode, it.sample_num, it.sorted_id)

    try:
        while not clock.done():
            before = sum(client.received.values()) + client.n_rejected
            take(client.poll(timeout_ms=50))
            if sum(client.received.values()) + client.n_rejected != before:
                clock.saw()
        take(client.poll(timeout_ms=0))
        take(client.flush())
        c = client.counts()
        out_streams = {}
        for name, s in streams.items():
            h = hashes[name]
            chans = sorted(s["channels"])
            per_ch = [h.samples[ch] for ch in chans]
            n = max(per_ch) if per_ch else 0
            out_streams[name] = {
                "sample_rate": s["sample_rate"], "channels": len(chans), "channel_nums": chans,
                "channel_names": [s["channels"][ch] for ch in chans],
                "samples": n, "samples_per_channel_equal": len(set(per_ch)) <= 1,
                "seconds": n / s["sample_rate"] if s["sample_rate"] else 0.0,
                "blocks": s["blocks"], "incomplete_blocks": s["incomplete_blocks"],
                "first_sample": s["first_sample"], "last_sample": s["last_sample"],
                "missing_samples": c["missing_samples"].get(name, 0),
                "sample_restarts": c["sample_restarts"].get(name, 0),
                "sha256": h.hexdigest()}
    finally:
        for h in hashes.values():
            h.close()
        client.close()
    return {"streams": out_streams, "messages": sum(c["received"].values()), "messages_by_kind": c["received"],
            "missing_messages": c["missing_messages"], "restarts": c["message_restarts"],
            "rejected": c["rejected"], "rejected_by_reason": c["rejected_by_reason"],
            "heartbeats_sent": c["heartbeats_sent"], "heartbeats_answered": c["heartbeats_answered"],
            "heartbeat_resets": c["heartbeat_resets"], **events.report()}


def listen_eventbroadcaster(endpoints: list[str], clock: Clock, ctx: zmq.Context,
                            heartbeat_port: int | None = None) -> dict:
    """Protocol eventbroadcaster's listener (rtdecode.sources.protocols): one endpoint."""
    from rtdecode.sources.openephys import event_broadcaster as eb

    host, port = parse_address(endpoints[0])
    client = eb.EventBroadcasterClient(host=host, port=port, context=ctx)
    events = EventLog()
    last_sample: dict[str, int] = {}
    rates: dict[str, float] = {}
    restarts = 0
    try:
        while not clock.done():
            ev = client.receive(timeout_ms=50)
            if ev is None:
                continue
            clock.saw()
            rates[ev.stream] = ev.sample_rate
            prev = last_sample.get(ev.stream)
            if prev is not None and ev.sample_number < prev - max(ev.sample_rate, 1.0):
                restarts += 1
                log.warning("Event Broadcaster: stream %s went back from sample %d to %d: the GUI restarted "
                            "(%d restart(s) so far)", ev.stream, prev, ev.sample_number, restarts)
            last_sample[ev.stream] = ev.sample_number
            if isinstance(ev, eb.BroadcastTtl):
                events.add_ttl(ev.stream, ev.sample_number, ev.line, ev.state)
            else:
                events.add_spike(ev.stream, ev.electrode, ev.sample_number, ev.sorted_id)
    finally:
        client.close()
    return {"streams": {s: {"sample_rate": r} for s, r in rates.items()},
            "messages": sum(client.received.values()), "restarts": restarts,
            "rejected": client.n_rejected, "rejected_by_reason": dict(client.rejected), **events.report()}


def probe(address: str | list[str], protocol: str, seconds: float = 10.0, idle_s: float = 2.0,
          heartbeat_port: int | None = None, context: zmq.Context | None = None) -> dict:
    """Listen to a live source for up to `seconds` (or until idle for `idle_s` after data) and
    return the report (see the module docstring). `address` may be a list for rtframe."""
    proto = protocols.get(protocol)
    if seconds <= 0:
        raise ConfigError(f"seconds must be > 0, got {seconds}")
    if idle_s < 0:
        raise ConfigError(f"idle must be >= 0 (0: off), got {idle_s}")
    addresses = [address] if isinstance(address, str) else list(address)
    if not addresses:
        raise ConfigError("probe: no address given")
    if not proto.many_addresses and len(addresses) != 1:
        raise ConfigError(f"probe: {protocol} takes one address, got {len(addresses)}")
    parsed = [parse_address(a) for a in addresses]
    ctx = context or zmq.Context.instance()
    clock = Clock(seconds, idle_s)
    log.info("probing %s (%s) for up to %g s", ", ".join(addresses), protocol, seconds)
    body = proto.listen([f"tcp://{h}:{p}" for h, p in parsed], clock, ctx, heartbeat_port)
    t = clock.summary()
    report = {"protocol": protocol, "address": [f"tcp://{h}:{p}" for h, p in parsed], **t, **body}
    data_s = max((s.get("seconds", 0.0) for s in body.get("streams", {}).values()), default=0.0)
    if data_s:
        report["data_s"] = data_s
        report["x_real_time"] = round(data_s / t["active_s"], 2) if t["active_s"] > 0 else None
    report["received_anything"] = bool(body["messages"] or body["rejected"])
    return report


# ---------------------------------------------------------------- command line

def add_probe_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "probe", help="connect to a live source and report what arrives (streams, gaps, checksums)",
        description="Connect to a live acquisition source and report what arrives: streams, channels, "
                    "sample rate, messages, gaps, restarts, events, spikes, rejected messages and a "
                    "SHA-256 of the data. Stops after --seconds, or once data arrived and then nothing "
                    "for --idle seconds.")
    p.add_argument("address", help="tcp://HOST:PORT, HOST:PORT or PORT (host 127.0.0.1); for openephys the "
                                   "ZMQ Interface data port")
    p.add_argument("--protocol", required=True, choices=list(protocols.PROTOCOLS))
    p.add_argument("--seconds", type=float, default=10.0, help="listen at most this long (default 10)")
    p.add_argument("--idle", type=float, default=2.0,
                   help="stop after data once nothing arrived for this long (default 2; 0: off)")
    p.add_argument("--heartbeat-port", type=int, default=None,
                   help="openephys: the plugin's heartbeat port (default: data port + 1)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the report as JSON")
    return p


def format_report(r: dict) -> str:
    head = (f"{r['protocol']} at {', '.join(r['address'])}: {r['messages']} message(s) in {r['wall_s']:.2f} s "
            f"({r['stopped_because']})")
    lines = [head]
    if "topics" in r:  # rtframe
        for topic, t in r["topics"].items():
            lines.append(f"  {topic}: {t['messages']} ({', '.join(f'{k} x{n}' for k, n in t['shapes'].items())})")
        lines.append(f"  seq {r['first_seq']}..{r['last_seq']}, dropped {r['dropped']}, restarts {r['restarts']}, "
                     f"ended {r['ended']}")
        lines.append(f"  frame sha256 {r['frame_sha256']} over {r['frame_bytes']} bytes")
    if "frame_streams" in r:  # scanimage_zmq
        lines.append(f"  frames {r['frames']} ({', '.join(f'{k} x{n}' for k, n in r['shapes'].items())}), "
                     f"lost {r['dropped']}, restarts {r['restarts']}")
        for name, n in r["frame_streams"].items():
            lines.append(f"  {name}: {n}")
        lines.append(f"  header keys {', '.join(r['header_keys'])}")
        lines.append(f"  frame sha256 {r['frame_sha256']} over {r['frame_bytes']} bytes")
        if r["first_rejected"]:
            lines.append(f"  first rejected message: {r['first_rejected']} (the assumed layout in "
                         "rtdecode/sources/scanimage_zmq.py does not fit: change it there)")
    for name, s in r.get("streams", {}).items():
        if "samples" in s:
            lines.append(f"  stream {name}: {s['channels']} channels at {s['sample_rate']:g} Hz, {s['samples']} samples "
                         f"({s['seconds']:.3f} s) in {s['blocks']} blocks, samples {s['first_sample']}.."
                         f"{s['last_sample']}, missing {s['missing_samples']}, restarts {s['sample_restarts']}")
            lines.append(f"    sha256 (float32, channel-major) {s['sha256']}")
        else:
            lines.append(f"  stream {name}: events at {s['sample_rate']:g} Hz")
    if "ttl_by_line" in r:  # TTLs and spikes (Open Ephys)
        on = sum(n for k, n in r["ttl_by_line"].items() if k.endswith(" on"))
        n_lines = len({k.rsplit(" ", 1)[0] for k in r["ttl_by_line"]})
        lines.append(f"  TTL events {r['ttl']} on {n_lines} line(s) ({on} on, {r['ttl'] - on} off); "
                     f"spikes {r['spikes']} on {len(r['spikes_by_electrode'])} electrode(s)")
        lines.append(f"  events sha256 {r['events_sha256']}")
    if "heartbeats_sent" in r:  # openephys
        lines.append(f"  lost messages {r['missing_messages']}, restarts {r['restarts']}, heartbeats "
                     f"{r['heartbeats_answered']}/{r['heartbeats_sent']} answered")
    elif "ttl_by_line" in r:  # eventbroadcaster
        lines.append(f"  restarts {r['restarts']}")
    lines.append(f"  rejected {r['rejected']}" + (f" {r['rejected_by_reason']}" if r["rejected"] else ""))
    if r.get("x_real_time") is not None:
        lines.append(f"  {r['data_s']:.3f} s of data in {r['active_s']:.3f} s: {r['x_real_time']:g}x real time")
    if not r["received_anything"]:
        lines.append("  nothing arrived: check the address, the port and that the sender is running")
    return "\n".join(lines)


def cmd_probe(args, progress) -> int:
    report = probe(args.address, args.protocol, seconds=args.seconds, idle_s=args.idle,
                   heartbeat_port=args.heartbeat_port)
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["received_anything"] else 1
