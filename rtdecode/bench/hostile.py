"""Hostile-sender measurements against a live `rtdecode run` (issue 12), over loopback.

    python -m rtdecode.bench.hostile fuzz --protocol rtframe --messages 100000 --json OUT.json
    python -m rtdecode.bench.hostile memory --json OUT.json
    python -m rtdecode.bench.hostile overload|clock_step|sigterm --json OUT.json   (rtdecode.bench.hostile_time)
    python -m rtdecode.bench.hostile flood --json OUT.json   (rtdecode.bench.hostile_flood)

`fuzz` starts `python -m rtdecode run RIG.yaml --record SESSION` (a small model, the protocol's
real adapter) as a child process, sends it `--messages` fuzzed messages (random bytes, valid
messages with one field replaced by a hostile value, absurd shapes and counters, deep JSON, wrong
part counts) interleaved with valid ones, then ends the session the protocol's valid way, and
reports whether the process survived (exit 0, no traceback), how many messages it counted as
rejected (by reason) and how many valid frames it still processed. For `openephys` the heartbeat
port answers every request with fuzzed multi-part replies too.

`memory` (rtframe) measures the live process's RSS before and after 200,000 distinct-garbage
messages, and around one 600 MiB message (refused by ZMQ_MAXMSGSIZE).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from rtdecode.bench.hostile_common import N, _free_port, _rig, _rss_kb, _start_run
from rtdecode.sources import wire
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys import zmq_interface_wire as ziw

HOSTILE = ["abc", [1], 1e308 * 10, float("nan"), -1, 2**70, 2**62, None, True, {}, [[[[[[[[[[1]]]]]]]]]],
           "x" * 5000, 0.5, -(2**63), [0, 2**70], [1] * 65]


def _hostile_json(rng: random.Random, base: dict, nested: str | None = None, protect=()) -> bytes:
    h = json.loads(json.dumps(base))
    target = h[nested] if nested and isinstance(h.get(nested), dict) else h
    for _ in range(rng.randint(1, 2)):
        key = rng.choice([k for k in target if k not in protect] + ["v" + str(rng.random())])
        target[key] = rng.choice(HOSTILE)
    kind = rng.random()
    if kind < 0.05:
        return b"[" * rng.randint(10, 20000)
    if kind < 0.10:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
    if kind < 0.13:  # a distinct text every time
        return json.dumps({"v": f"v{rng.random()}", "junk": rng.random()}).encode()
    return json.dumps(h, allow_nan=True).encode()


def _mutate_parts(rng: random.Random, parts: list[bytes]) -> list[bytes]:
    r = rng.random()
    if r < 0.05:
        return parts[: rng.randint(1, len(parts) - 1)]
    if r < 0.10:
        return parts + [b"extra"] * rng.randint(1, 3)
    if r < 0.15:
        i = rng.randrange(len(parts))
        p = bytearray(parts[i])
        for _ in range(rng.randint(1, 4)):
            if p:
                p[rng.randrange(len(p))] = rng.getrandbits(8)
        parts = list(parts)
        parts[i] = bytes(p)
    return parts


# ---------------------------------------------------------------- per protocol

def fuzz_rtframe(rng: random.Random, seq: int, k: int) -> list[bytes]:
    base = {"v": 1, "seq": seq, "t": time.time(), "dtype": "<u2", "shape": [64, 64], "frameNumberAcq": k,
            "channel": 0, "plane": 0}
    topic = rng.choice([b"frame", b"frame", b"stim", b"stats", b"framex", b"stim\xff"])  # subscribed prefixes
    if topic == b"stim":
        base.update(frame=k, trial=0, shape=[0], dtype="|u1")
    header = _hostile_json(rng, base)
    if topic == b"stats" and b'"end"' in header:
        header = header.replace(b'"end"', b'"End"')  # a fuzzed message must not be the valid end
    payload = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 8, 64])))
    if rng.random() < 0.2:
        payload = np.zeros((64, 64), np.uint16).tobytes()
    return _mutate_parts(rng, [topic, header, payload])


def fuzz_openephys(rng: random.Random, num: int, k: int) -> list[bytes]:
    r = rng.random()
    if r < 0.4:
        frames = ziw.encode_data(num, "s", rng.randrange(N), "CH", k * 100, 1000.0, np.zeros(100, np.float32), 0.0)
        nested = "content"
    elif r < 0.7:
        frames = ziw.encode_ttl(num, "s", 100, k * 100, 1, 1, 2, 0.0)
        nested = "content"
    else:
        frames = ziw.encode_spike(num, "s", 100, "e", k * 100, 0, [1.0], np.zeros((1, 4), np.float32), 0.0)
        nested = "spike"
    frames[1] = _hostile_json(rng, json.loads(frames[1]), nested if rng.random() < 0.7 else None)
    return _mutate_parts(rng, frames)


PROTECT: tuple = ()  # fields left valid (--no-sample-jumps: sample_number)


def fuzz_eventbroadcaster(rng: random.Random, num: int, k: int) -> list[bytes]:
    if rng.random() < 0.5:
        frames = eb.encode_ttl("s", 1, 1000.0, "c", k * 33, 0, True)
    else:
        frames = eb.encode_spike("s", 1, f"e{rng.randrange(N)}", 1000.0, k * 33, 0, [1.0])
    frames[1] = _hostile_json(rng, json.loads(frames[1]), protect=PROTECT)
    return _mutate_parts(rng, frames)


def _hb_garbage(ctx, port: int, stop: threading.Event, rng: random.Random, counter: list) -> None:
    """A heartbeat 'REP' (a ROUTER) that answers with fuzzed multi-part replies."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"tcp://127.0.0.1:{port}")
    while not stop.is_set():
        if sock.poll(20):
            parts = sock.recv_multipart()
            ident = parts[0]
            body = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))) for _ in range(rng.randint(1, 3))]
            sock.send_multipart([ident, b""] + body)
            counter[0] += 1
    sock.close()


def run_fuzz(protocol: str, messages: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="rtdecode-hostile-") as tmp:
        tmp = Path(tmp)
        port = _free_port()
        while protocol == "openephys" and not _port_free(port + 1):
            port = _free_port()
        rig, port = _rig(tmp, protocol, port)
        pub = ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.SNDHWM, 0)  # never drop here: every fuzzed message reaches the session
        pub.setsockopt(zmq.LINGER, 5000)
        pub.bind(f"tcp://127.0.0.1:{port}")
        stop, hb_count = threading.Event(), [0]
        hb = None
        if protocol == "openephys":
            hb = threading.Thread(target=_hb_garbage, args=(ctx, port + 1, stop, random.Random(seed + 1), hb_count),
                                  daemon=True)
            hb.start()
        proc = _start_run(rig, tmp / "session")
        t0 = time.monotonic()
        if not pub.poll(120_000):
            proc.kill()
            raise RuntimeError(f"rtdecode run never subscribed: {proc.stderr.read().decode()[-2000:]}")
        pub.recv()
        time.sleep(0.5)
        rss0 = _rss_kb(proc.pid)
        fuzz = {"rtframe": fuzz_rtframe, "openephys": fuzz_openephys, "eventbroadcaster": fuzz_eventbroadcaster}[protocol]
        seq, k, valid = 0, 1, 0
        sent = 0
        for i in range(messages):
            if i % 20 == 0:  # a valid message now and then: the session must keep processing them
                for m in _valid(protocol, seq, k):
                    pub.send_multipart(m)
                    seq += 1
                    valid += 1
                k += 1
            pub.send_multipart(fuzz(rng, seq, k))
            seq += 1
            sent += 1
            if i % 2000 == 0 and proc.poll() is not None:
                break
        for m in _valid(protocol, seq, k):
            pub.send_multipart(m)
            seq += 1
            valid += 1
        if protocol == "rtframe":
            pub.send_multipart(wire.encode("stats", seq, time.time(), None, end=True, frames=k))
        sent_s = time.monotonic() - t0
        rss1 = _rss_kb(proc.pid) if proc.poll() is None else -1
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        stop.set()
        if hb is not None:
            hb.join(2)
        pub.close()
        end = {}
        if (tmp / "session" / "end.json").is_file():
            end = json.loads((tmp / "session" / "end.json").read_text())
    text = err.decode("utf-8", "replace")
    return {
        "protocol": protocol, "fuzzed_messages_sent": sent, "valid_messages_sent": valid, "seed": seed,
        "exit_code": proc.returncode, "traceback": "Traceback" in text, "crashed": proc.returncode != 0 or "Traceback" in text,
        "frames_processed": end.get("frames"), "published": end.get("published"),
        "rejected": end.get("rejected"), "rejected_by_reason": end.get("rejected_by_reason"),
        "message_errors": end.get("message_errors"), "errors": end.get("errors"), "stopped_by": end.get("stopped_by"),
        "dropped": end.get("dropped"), "lost_frames": end.get("lost_frames"),
        "source_counts": end.get(protocol) if protocol != "rtframe" else None,
        "unknown_units": len(end.get("unknown_units") or {}) if protocol == "eventbroadcaster" else None,
        "heartbeat_garbage_replies": hb_count[0], "rss_kb_before": rss0, "rss_kb_after": rss1,
        "send_s": round(sent_s, 1), "stdout_tail": out.decode("utf-8", "replace")[-500:], "stderr_tail": text[-1500:],
    }


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _valid(protocol: str, seq: int, k: int) -> list[list[bytes]]:
    if protocol == "rtframe":
        return [wire.encode("frame", seq, time.time(), np.full((64, 64), 100 + k % 50, np.uint16), frameNumberAcq=k,
                            channel=0, plane=0)]
    if protocol == "openephys":
        return [ziw.encode_data(seq + c, "s", c, f"CH{c}", 1_000_000 + k * 100, 1000.0,
                                np.random.default_rng(k).normal(0, 5, 100).astype(np.float32), time.time() * 1e3)
                for c in range(N)]
    return [eb.encode_spike("s", 1, f"e{k % N}", 1000.0, k * 33, 0, [1.0])]


# ---------------------------------------------------------------- memory

def run_memory(garbage: int = 200_000, big_mib: int = 600) -> dict:
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="rtdecode-hostile-") as tmp:
        tmp = Path(tmp)
        rig, port = _rig(tmp, "rtframe", _free_port())
        pub = ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        pub.setsockopt(zmq.LINGER, 5000)
        pub.bind(f"tcp://127.0.0.1:{port}")
        proc = _start_run(rig, tmp / "session")
        if not pub.poll(120_000):
            proc.kill()
            raise RuntimeError(f"rtdecode run never subscribed: {proc.stderr.read().decode()[-2000:]}")
        while pub.poll(300):
            pub.recv()
        seq = 0
        for k in range(1, 31):  # warm: the session runs normally first
            pub.send_multipart(wire.encode("frame", seq, time.time(), np.zeros((64, 64), np.uint16), frameNumberAcq=k,
                                           channel=0, plane=0))
            seq += 1
            time.sleep(0.01)
        time.sleep(2)
        rss_start = _rss_kb(proc.pid)
        t0 = time.monotonic()
        for i in range(garbage):  # distinct garbage: a new version string, and a distinct bad field, each time
            v = f"v{i}-{random.random()}"
            pub.send_multipart([b"frame", json.dumps({"v": v, "seq": i, "junk": "x" * (i % 97)}).encode(), b""])
        time.sleep(3)
        while _rss_kb(proc.pid) and time.monotonic() - t0 < 300:  # let it drain (the socket queue)
            before = _rss_kb(proc.pid)
            time.sleep(2)
            if abs(_rss_kb(proc.pid) - before) < 256:
                break
        rss_after_garbage = _rss_kb(proc.pid)
        # one 600 MiB frame: refused by ZMQ_MAXMSGSIZE before it is held; the session goes on
        big = np.zeros(big_mib * 2**20 // 2, np.uint16)
        header = json.dumps({"v": 1, "seq": seq, "t": time.time(), "dtype": "<u2", "shape": [big.size],
                             "frameNumberAcq": 31, "channel": 0, "plane": 0}).encode()
        hwm_before_big = _rss_kb(proc.pid, "VmHWM")
        pub.send_multipart([b"frame", header, memoryview(big)], copy=False)
        seq += 1
        time.sleep(8)
        rss_after_big, hwm_after_big = _rss_kb(proc.pid), _rss_kb(proc.pid, "VmHWM")
        del big
        while pub.poll(1000):  # the re-subscription after the redial
            if pub.recv() == b"\x01frame":
                break
        for k in range(32, 62):
            pub.send_multipart(wire.encode("frame", seq, time.time(), np.zeros((64, 64), np.uint16), frameNumberAcq=k,
                                           channel=0, plane=0))
            seq += 1
            time.sleep(0.01)
        pub.send_multipart(wire.encode("stats", seq, time.time(), None, end=True, frames=61))
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pub.close()
        end = json.loads((tmp / "session" / "end.json").read_text()) if (tmp / "session" / "end.json").is_file() else {}
    text = err.decode("utf-8", "replace")
    return {
        "distinct_garbage_messages": garbage, "rss_kb_start": rss_start, "rss_kb_after_garbage": rss_after_garbage,
        "rss_growth_mb_garbage": round((rss_after_garbage - rss_start) / 1024, 1),
        "big_message_mib": big_mib, "rss_kb_after_big": rss_after_big,
        "rss_growth_mb_big": round((rss_after_big - rss_after_garbage) / 1024, 1),
        "peak_rss_growth_mb_big": round((hwm_after_big - max(hwm_before_big, rss_after_garbage)) / 1024, 1),
        "peak_kb_before_big": hwm_before_big, "peak_kb_after_big": hwm_after_big,
        "exit_code": proc.returncode, "traceback": "Traceback" in text,
        "rejected_by_reason": end.get("rejected_by_reason"), "frames_processed": end.get("frames"),
        "redials": end.get("redials"), "stopped_by": end.get("stopped_by"),
        "stderr_lines": text.count("\n"), "stderr_tail": text[-1000:],
    }


def main(argv=None, progress=False) -> int:
    from rtdecode.bench import hostile_flood, hostile_time

    ap = argparse.ArgumentParser(prog="python -m rtdecode.bench.hostile", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fuzz")
    f.add_argument("--protocol", choices=("rtframe", "openephys", "eventbroadcaster"), required=True)
    f.add_argument("--messages", type=int, default=100_000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-sample-jumps", action="store_true",
                   help="eventbroadcaster: leave sample_number valid (the adapter's binning cannot take absurd ones)")
    f.add_argument("--json", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--garbage", type=int, default=200_000)
    m.add_argument("--big-mib", type=int, default=600)
    m.add_argument("--json", required=True)
    hostile_time.add_parsers(sub)  # overload, clock_step, sigterm (issue 27)
    hostile_flood.add_parser(sub)  # flood (issue 27)
    args = ap.parse_args(argv)
    cmd = "python -m rtdecode.bench.hostile " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    if args.what == "fuzz":
        global PROTECT
        PROTECT = ("sample_number",) if args.no_sample_jumps else ()
        d = run_fuzz(args.protocol, args.messages, args.seed)
    elif args.what in hostile_time.SCENARIOS:
        d = hostile_time.run(args, cmd)
    elif args.what == "flood":
        d = hostile_flood.run(args, cmd)
    else:
        d = run_memory(args.garbage, args.big_mib)
    d = {"command": cmd, "wall_s": round(time.time() - t0, 1), **d}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(d, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in d.items() if not k.endswith("_tail")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
