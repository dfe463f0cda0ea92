"""Time attacks on a live `rtdecode run` over loopback (issue 27, classes 1, 2 and 4; the connection
flood of class 3 is rtdecode.bench.hostile_flood, which uses this module's rig and sender).

    rtdecode bench hostile overload [--seconds 20] --json OUT.json
    rtdecode bench hostile clock_step --json OUT.json
    rtdecode bench hostile sigterm --json OUT.json

Both start `python -m rtdecode run RIG.yaml --record SESSION` as a child process on a virtual rig
(two-photon frames from one publisher, stim messages at 30 Hz from a second one, a trigger rule that
fires on every decoded frame, `freshness: every_frame`, `max_age_ms: 50`) and send from this process:

- overload: 30 Hz (warm), a short burst as fast as this sender goes (the pipeline's capacity is the
  rate the session processed it at, from its live stats), 30 Hz again, then `--seconds` at
  `--factor` (3) x that capacity, then 30 Hz (recovery). The clock window of the live loop is 60 s:
  `--seconds 120` is the issue's attack.
- clock_step: 30 Hz throughout on the true clock, except one frame stamped now + 1e6 s, then the
  frame sender's clock steps back 1 h, then forward again to the true clock.
- sigterm: 30 Hz, then SIGTERM (or `--signal INT`) half-way through a one-second chunk while frames
  keep coming: the exit code, whether end.json and the open chunk made it to disk, the status and
  its reason, and every processed frame on disk (`records_lost` 0; `unprocessed_at_stop`: frames
  sent before the signal still queued when the loop stopped, not processed and so not lost).

Reported per scenario: `stale_fired` (triggers fired on frames whose true age, the fire time minus
the time this process sent the frame it names, is over `max_age_ms`: must be 0), `fired` per
phase, the frames sent / recorded / counted as lost (`uncounted_lost` must be 0), the session's
status, RSS growth of the live process over the stress, `recovery_s` (the end of the stress to the
first trigger fired on a fresh frame), the recorded `local_t`'s error against the true send time,
the share of recorded frames without a stimulus label per phase, `acquired_to_published_ms` and the
session's clock counters (end.json).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from rtdecode.bench import hostile_common as hostile

SCENARIOS = ("overload", "clock_step", "sigterm")
MAX_AGE_MS = 50.0


def add_parsers(sub) -> None:
    """The scenarios' subcommands of `rtdecode bench hostile`."""
    o = sub.add_parser("overload", help="a sender at --factor x the pipeline's capacity for --seconds")
    o.add_argument("--seconds", type=float, default=20.0, help="length of the overload (the issue's: 120)")
    o.add_argument("--factor", type=float, default=3.0)
    o.add_argument("--frame", type=int, default=512, help="frame side, pixels")
    o.add_argument("--rois", type=int, default=300)
    o.add_argument("--json", required=True)
    c = sub.add_parser("clock_step", help="a frame from the future, a sender clock step back 1 h and forward")
    c.add_argument("--phase-s", type=float, default=6.0, help="seconds of each phase")
    c.add_argument("--frame", type=int, default=256)
    c.add_argument("--rois", type=int, default=100)
    c.add_argument("--json", required=True)
    t = sub.add_parser("sigterm", help="SIGTERM (or SIGINT) mid-chunk while frames keep coming")
    t.add_argument("--before-s", type=float, default=2.5, help="seconds of frames before the signal (mid-chunk: x.5)")
    t.add_argument("--signal", choices=("TERM", "INT"), default="TERM")
    t.add_argument("--frame", type=int, default=256)
    t.add_argument("--rois", type=int, default=100)
    t.add_argument("--json", required=True)


def run(args, command: str = "") -> dict:
    """Run the scenario `args.what`; returns {"scenarios": {...}}: the scenarios already in the
    `--json` file, with this one's result (its command, machine and load) added or replaced."""
    if args.what == "overload":
        return record(args, command, lambda: run_overload(args.seconds, args.factor, args.frame, args.rois))
    if args.what == "sigterm":
        return record(args, command, lambda: run_signal(args.before_s, args.signal, args.frame, args.rois))
    return record(args, command, lambda: run_clock_step(args.phase_s, args.frame, args.rois))


def record(args, command: str, scenario) -> dict:
    """`scenario()`'s result with its command, machine and load, merged into the scenarios already in
    `args.json` under `args.what`."""
    from rtdecode.bench import machine_info

    load = _load()
    d = scenario()
    d = {"command": command, "load_before": load, "load_after": _load(), "machine": machine_info(), **d}
    prev = {}
    try:
        prev = json.loads(Path(args.json).read_text()).get("scenarios", {})
    except (OSError, ValueError, AttributeError):
        pass
    return {"scenarios": {**prev, args.what: d}}


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- the rig and the sender

def _rig(folder: Path, side: int, n_rois: int, max_peers: int | None = None) -> dict:
    from rtdecode.rig.twophoton import Microscope

    scope = Microscope(n_rois, seed=1, frame_shape=(side, side))
    scope.save_rois(folder / "rois")
    hostile._model(folder, n_rois)
    ports = {k: hostile._free_port() for k in ("frames", "stim", "publish", "trigger")}
    crop = min(256, side)
    (folder / "rig.yaml").write_text(
        f'source: {{protocol: rtframe, address: ["tcp://127.0.0.1:{ports["frames"]}", '
        f'"tcp://127.0.0.1:{ports["stim"]}"]}}\n'
        f'extraction: {{two_photon: {{rois: rois, crop: [{crop}, {crop}]}}}}\n'
        f'decoder: {{model: model, backends: [numpy]}}\n'
        f'outputs: {{publish: "tcp://127.0.0.1:{ports["publish"]}"'
        f'{"" if max_peers is None else f", max_peers: {max_peers}"}}}\n'
        f'freshness: every_frame\nmax_age_ms: {MAX_AGE_MS}\n'
        f'triggers:\n  - {{name: every, kind: zmq, address: "tcp://127.0.0.1:{ports["trigger"]}", min_interval_s: 0,\n'
        f'     rule: {{kind: luminance, threshold: 255, below: true}}}}\n')  # every decoded frame is <= 255
    frame = np.clip(scope.mean_image, 0, 65535).astype(np.uint16)
    return {"rig": folder / "rig.yaml", "ports": ports, "frame": frame}


class Sender:
    """The frame publisher (XPUB, the sender's usual high-water mark of 1000: a full queue drops) and
    the stimulus publisher. `sent[k]` is the true time (time.time()) frame k left."""

    def __init__(self, ctx: zmq.Context, ports: dict, frame: np.ndarray):
        self.src = ctx.socket(zmq.XPUB)
        self.src.setsockopt(zmq.SNDHWM, 1000)
        self.src.setsockopt(zmq.LINGER, 2000)
        self.src.bind(f"tcp://127.0.0.1:{ports['frames']}")
        self.stim = ctx.socket(zmq.XPUB)
        self.stim.setsockopt(zmq.LINGER, 2000)
        self.stim.bind(f"tcp://127.0.0.1:{ports['stim']}")
        self.payload = frame.tobytes()
        self.shape = list(frame.shape)
        self.seq = self.sseq = 0
        self.k = 0  # frameNumberAcq of the last frame sent (from 1)
        self.sent: list[float] = [float("nan")]
        self.stim_next = 0.0
        self.stim_frame = 0
        self.stim_times: list[float] = []

    def wait_subscribed(self, timeout_s: float = 120.0) -> bool:
        ok = self.src.poll(int(timeout_s * 1000)) and self.stim.poll(int(timeout_s * 1000))
        for s in (self.src, self.stim):
            while s.poll(300):
                s.recv()
        return bool(ok)

    def frame(self, t: float | None = None) -> None:
        self.k += 1
        now = time.time()
        header = {"v": 1, "seq": self.seq, "t": now if t is None else t, "dtype": "<u2", "shape": self.shape,
                  "frameNumberAcq": self.k, "channel": 1, "plane": 1}
        self.src.send_multipart([b"frame", json.dumps(header).encode(), self.payload])
        self.sent.append(now)
        self.seq += 1

    def stim_due(self) -> None:
        """A stim message every 1/30 s, on the true clock."""
        now = time.time()
        if now < self.stim_next:
            return
        header = {"v": 1, "seq": self.sseq, "t": now, "dtype": "|u1", "shape": [0], "frame": self.stim_frame,
                  "trial": 0}
        self.stim.send_multipart([b"stim", json.dumps(header).encode(), b""])
        self.stim_times.append(now)
        self.sseq += 1
        self.stim_frame += 1
        self.stim_next = now + 1 / 30

    def stream(self, seconds: float, rate: float, clock=None) -> tuple[float, float]:
        """Frames at `rate` per second (as fast as it goes when the schedule is behind) for
        `seconds`, stamped `clock(now)` (default: the true clock); returns (start, end) true times."""
        t0 = time.time()
        n = 0
        while True:
            now = time.time()
            if now - t0 >= seconds:
                break
            self.stim_due()
            if n < (now - t0) * rate:
                self.frame(None if clock is None else clock(now))
                n += 1
            else:
                time.sleep(min(0.001, 1 / rate))
        return t0, time.time()

    def end(self) -> None:
        header = {"v": 1, "seq": self.seq, "t": time.time(), "dtype": "|u1", "shape": [0], "end": True,
                  "frames": self.k}
        self.src.send_multipart([b"stats", json.dumps(header).encode(), b""])

    def close(self) -> None:
        self.src.close()
        self.stim.close()


class Stats:
    """The live session's stats messages (its publish socket), kept with their arrival times."""

    def __init__(self, ctx: zmq.Context, port: int):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"stats")
        self.sock.setsockopt(zmq.RCVHWM, 100)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.seen: list[tuple[float, dict]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(100):
                parts = self.sock.recv_multipart()
                try:
                    self.seen.append((time.time(), json.loads(parts[1])))
                except ValueError:
                    pass

    def frames_between(self, t0: float, t1: float) -> float | None:
        """Frames processed per second between two true times (from the stats' `frames`)."""
        pts = [(t, s.get("frames")) for t, s in self.seen if t0 <= t <= t1 and isinstance(s.get("frames"), int)]
        if len(pts) < 2 or pts[-1][0] - pts[0][0] <= 0:
            return None
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def _start(tmp: Path, rig: dict, ctx, nofile: int | None = None) -> tuple[subprocess.Popen, Sender, Stats]:
    proc = hostile._start_run(rig["rig"], tmp / "session", nofile)
    sender = Sender(ctx, rig["ports"], rig["frame"])
    if not sender.wait_subscribed():
        proc.kill()
        raise RuntimeError(f"rtdecode run never subscribed: {proc.stderr.read().decode()[-2000:]}")
    stats = Stats(ctx, rig["ports"]["publish"])
    time.sleep(0.5)
    return proc, sender, stats


def _finish(proc, sender: Sender, stats: Stats, tmp: Path) -> dict:
    sender.end()
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    sender.close()
    stats.close()
    from rtdecode.outputs.session_reader import read_session

    folder = tmp / "session"
    end = json.loads((folder / "end.json").read_text()) if (folder / "end.json").is_file() else {}
    status = json.loads((folder / "status.json").read_text().strip() or "{}") if (folder / "status.json").is_file() else {}
    session = read_session(folder)
    return {"exit_code": proc.returncode, "stderr": err.decode("utf-8", "replace"), "end": end, "status": status,
            "session": session}


def _triggers(session: dict, sent: list[float]) -> list[dict]:
    """The fired (not suppressed) trigger events with their true age (s)."""
    out = []
    for e in session["triggers"]:
        if not isinstance(e, dict) or e.get("suppressed"):
            continue
        k = e.get("frameNumberAcq")
        if isinstance(k, int) and 0 < k < len(sent):
            out.append({"t": e["t"], "age": e["t"] - sent[k], "k": k})
    return out


def _in(events, t0, t1):
    return [e for e in events if t0 <= e["t"] < t1]


def _common(fin: dict, sender: Sender, rss: dict, events: list[dict], stress_end: float) -> dict:
    end, a = fin["end"], fin["session"]["arrays"]
    number = a.get("number", np.zeros(0, np.int64)).astype(np.int64)
    recorded = len(np.unique(number))
    counted = int(end.get("lost_frames") or 0)
    stale = [e for e in events if e["age"] * 1e3 > MAX_AGE_MS]
    fresh_after = [e for e in events if e["t"] >= stress_end and e["age"] * 1e3 <= MAX_AGE_MS]
    local_t = a.get("local_t")
    err_ms = None
    if local_t is not None and number.size:
        ok = (number > 0) & (number < len(sender.sent))
        true = np.asarray(sender.sent)[number[ok]]
        err = np.abs(local_t[ok] - true) * 1e3
        err_ms = {"p50": round(float(np.median(err)), 3), "p99": round(float(np.percentile(err, 99)), 3),
                  "max": round(float(err.max()), 3), "frames_over_50ms": int((err > MAX_AGE_MS).sum())}
    tr = end.get("triggers") or {}
    return {
        "exit_code": fin["exit_code"], "traceback": "Traceback" in fin["stderr"],
        "stale_fired": len(stale), "stale_fired_ages_ms": sorted(round(e["age"] * 1e3, 1) for e in stale)[-10:],
        "fired": len(events), "suppressed_stale": tr.get("suppressed_stale"),
        "suppressed": {k: v for k, v in tr.items() if k.startswith("suppressed")},
        "triggers_enabled_at_end": tr.get("enabled"), "triggers_disabled_reason": tr.get("disabled_reason"),
        "frames_sent": sender.k, "frames_recorded": recorded, "lost_frames_counted": counted,
        "dropped_counted": end.get("dropped"),
        "uncounted_lost": sender.k - recorded - counted - int(end.get("records_lost") or 0),
        "records_lost": end.get("records_lost"), "status": fin["status"].get("state", fin["status"]),
        "damaged": fin["session"].get("damaged"),
        "rss_mb_before": round(rss["before"] / 1024, 1), "rss_mb_after": round(rss["after"] / 1024, 1),
        "rss_growth_mb": round((rss["after"] - rss["before"]) / 1024, 1),
        "recovery_s": None if not fresh_after else round(fresh_after[0]["t"] - stress_end, 3),
        "local_t_error_ms": err_ms,
        "acquired_to_published_ms": end.get("acquired_to_published_ms"),
        "arrived_to_published_ms": end.get("arrived_to_published_ms"),
        "clock": end.get("clock"), "clock_steps": end.get("clock_steps"), "clock_rejected": end.get("clock_rejected"),
        "restarts": end.get("restarts"), "source_restarts": end.get("source_restarts"),
        "stderr_tail": fin["stderr"][-1500:],
    }


def _unlabelled(session: dict, sent: list[float], t0: float, t1: float, skip_s: float = 1.0) -> dict:
    """Recorded frames sent in [t0 + skip_s, t1) and how many have no stimulus label (shown -1)."""
    a = session["arrays"]
    number = a.get("number", np.zeros(0, np.int64)).astype(np.int64)
    if not number.size:
        return {"frames": 0, "unlabelled": 0}
    ok = (number > 0) & (number < len(sent))
    when = np.full(number.shape, np.nan)
    when[ok] = np.asarray(sent)[number[ok]]
    sel = (when >= t0 + skip_s) & (when < t1)
    shown = a["shown"][sel]
    return {"frames": int(sel.sum()), "unlabelled": int((shown[:, 0] < 0).sum())}


# ---------------------------------------------------------------- scenarios

def run_overload(seconds: float = 20.0, factor: float = 3.0, side: int = 512, n_rois: int = 300) -> dict:
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="rtdecode-hostile-time-") as tmp:
        tmp = Path(tmp)
        rig = _rig(tmp, side, n_rois)
        proc, sender, stats = _start(tmp, rig, ctx)
        sender.stream(3.0, 30.0)
        b0, b1 = sender.stream(3.0, 1e5)  # as fast as this sender goes: the session falls behind
        sender.stream(4.0, 30.0)  # the backlog drains
        capacity = stats.frames_between(b0 + 0.5, b1 + 1.0) or 300.0
        rate = factor * capacity
        rss0 = hostile._rss_kb(proc.pid)
        s0, s1 = sender.stream(seconds, rate)
        r0, r1 = sender.stream(8.0, 30.0)
        rss1 = hostile._rss_kb(proc.pid)
        processed = stats.frames_between(s0 + 1.0, s1)
        fin = _finish(proc, sender, stats, tmp)
        events = _triggers(fin["session"], sender.sent)
        out = {"scenario": "overload", "frame_side": side, "rois": n_rois, "overload_s": seconds,
               "capacity_fps": round(capacity, 1), "target_rate_fps": round(rate, 1),
               "sent_rate_fps": round(sum(1 for t in sender.sent if s0 <= t < s1) / (s1 - s0), 1),
               "processed_rate_fps": None if processed is None else round(processed, 1),
               "fired_during_overload": len(_in(events, s0, s1)), "fired_during_recovery": len(_in(events, r0, r1)),
               **_common(fin, sender, {"before": rss0, "after": rss1}, events, s1)}
        out["overload_factor_achieved"] = (None if not out["processed_rate_fps"] else
                                           round(out["sent_rate_fps"] / out["processed_rate_fps"], 2))
    return out


def run_clock_step(phase_s: float = 6.0, side: int = 256, n_rois: int = 100) -> dict:
    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="rtdecode-hostile-time-") as tmp:
        tmp = Path(tmp)
        rig = _rig(tmp, side, n_rois)
        proc, sender, stats = _start(tmp, rig, ctx)
        phases = {}
        phases["warm"] = sender.stream(phase_s, 30.0)
        rss0 = hostile._rss_kb(proc.pid)
        sender.frame(time.time() + 1e6)  # one frame from the future
        phases["after_future_frame"] = sender.stream(phase_s, 30.0)
        phases["clock_back_1h"] = sender.stream(phase_s, 30.0, clock=lambda now: now - 3600.0)
        phases["clock_forward_again"] = sender.stream(phase_s, 30.0)
        rss1 = hostile._rss_kb(proc.pid)
        fin = _finish(proc, sender, stats, tmp)
        events = _triggers(fin["session"], sender.sent)
        per_phase = {}
        for name, (t0, t1) in phases.items():
            ev = _in(events, t0, t1)
            fresh = [e for e in ev if e["age"] * 1e3 <= MAX_AGE_MS]
            per_phase[name] = {"fired": len(ev), "fired_last_half": len(_in(events, (t0 + t1) / 2, t1)),
                               "first_fresh_fire_s": None if not fresh else round(fresh[0]["t"] - t0, 3),
                               "stale_fired": sum(1 for e in ev if e["age"] * 1e3 > MAX_AGE_MS),
                               **_unlabelled(fin["session"], sender.sent, t0, t1)}
        out = {"scenario": "clock_step", "frame_side": side, "rois": n_rois, "phase_s": phase_s,
               "phases": per_phase,
               **_common(fin, sender, {"before": rss0, "after": rss1}, events, phases["after_future_frame"][0])}
    return out


def run_signal(before_s: float = 2.5, sig: str = "TERM", side: int = 256, n_rois: int = 100) -> dict:
    """30 Hz for `before_s`, then SIGTERM / SIGINT to the live process, frames still coming until it exits."""
    import signal

    ctx = zmq.Context.instance()
    signum = {"TERM": signal.SIGTERM, "INT": signal.SIGINT}[sig]
    with tempfile.TemporaryDirectory(prefix="rtdecode-hostile-time-") as tmp:
        tmp = Path(tmp)
        rig = _rig(tmp, side, n_rois)
        proc, sender, stats = _start(tmp, rig, ctx)
        rss0 = hostile._rss_kb(proc.pid)
        sender.stream(before_s, 30.0)
        rss1 = hostile._rss_kb(proc.pid)
        sent_before = sender.k
        signalled = time.time()
        proc.send_signal(signum)
        while proc.poll() is None and time.time() - signalled < 30:
            sender.stream(0.1, 30.0)  # frames keep coming while it stops
        exited_s = time.time() - signalled
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        sender.close()
        stats.close()
        from rtdecode.outputs.session_reader import read_session

        folder = tmp / "session"
        end = json.loads((folder / "end.json").read_text()) if (folder / "end.json").is_file() else {}
        status = json.loads((folder / "status.json").read_text().strip() or "{}")
        session = read_session(folder)
        number = session["arrays"].get("number", np.zeros(0, np.int64)).astype(np.int64)
        recorded = len(np.unique(number))
        processed = end.get("frames")
        out = {"scenario": "sigterm", "signal": f"SIG{sig}", "frame_side": side, "rois": n_rois,
               "before_s": before_s, "exit_code": proc.returncode, "exit_s": round(exited_s, 3),
               "traceback": "Traceback" in err.decode("utf-8", "replace"),
               "end_json": bool(end), "ended_by": end.get("ended_by"), "stop_reason": end.get("stop_reason"),
               "status": status.get("state"), "status_reason": status.get("reason"),
               "damaged": session.get("damaged"), "chunks": len(end.get("chunks") or []),
               "frames_sent_before_signal": sent_before, "frames_sent": sender.k,
               "frames_processed": processed, "frames_recorded": recorded,
               "records_lost": None if processed is None else processed - recorded,
               "lost_frames_counted": end.get("lost_frames"),
               "unprocessed_at_stop": None if processed is None else max(0, sent_before - processed),
               "stale_fired": len([e for e in _triggers(session, sender.sent) if e["age"] * 1e3 > MAX_AGE_MS]),
               "rss_mb_before": round(rss0 / 1024, 1), "rss_mb_after": round(rss1 / 1024, 1),
               "rss_growth_mb": round((rss1 - rss0) / 1024, 1),
               "stderr_tail": err.decode("utf-8", "replace")[-1500:]}
    return out
