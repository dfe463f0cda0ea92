"""Soak test of the live path: the virtual rig at 30 Hz for N minutes, with recording and triggers.

    rtdecode bench soak --minutes 10 --json benchmarks/results/soak.json

A sender process streams prerendered two-photon frames (300 frames looped, so that rendering does
not compete with the pipeline; frame counters keep counting) at `--rate` Hz; this process runs the
live session (ingest -> extraction -> ring -> ridge decoder (random weights, fitted shape) ->
publish), a trigger rule that fires once a second (ZmqSink, every event written to triggers.jsonl)
and the crash-safe recorder. Writes JSON: RSS of this process at the first frame, after the first
minute and at the end (and the growth), frames sent/processed, dropped messages, lost frames,
records processed vs on disk (lost records), latency p50/p99 (arrival -> published, sender ->
published, per stage, decoded -> trigger), load average over the run. Targets (reported, not
asserted): RSS growth < 50 MB, zero dropped, zero lost records.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

from rtdecode.bench import RESULTS, machine_info, parser, positive_float, positive_int, script_main, write_json
from rtdecode.bench.e2e import build_live, start_sender
from rtdecode.sources.ingest import Ingest
from rtdecode.live.session import LiveSession, limit_blas_threads
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.stimuli.movies import FPS
from rtdecode.rig.sender import SenderConfig
from rtdecode.outputs.triggers import CallableRule, TriggerEngine
from rtdecode.outputs.triggers.sinks import ZmqSink

log = logging.getLogger(__name__)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class SoakSession(LiveSession):
    """Samples RSS and the load average with every 1-s stats message."""

    def __init__(self, *a, sample_every_s: float = 10.0, **k):
        super().__init__(*a, **k)
        self.samples: list[dict] = []
        self.rss_first_frame: float | None = None
        self.sample_every_s = sample_every_s
        self._t0 = time.monotonic()
        self._last_sample = -1e9

    def on_frame(self, msg):
        if self.rss_first_frame is None:
            self.rss_first_frame = rss_mb()
            self._t0 = time.monotonic()
        super().on_frame(msg)

    def publish_stats(self):
        super().publish_stats()
        now = time.monotonic()
        if self.rss_first_frame is not None and now - self._last_sample >= self.sample_every_s:
            self._last_sample = now
            st = self.stats()
            self.samples.append({"t_s": round(now - self._t0, 1), "rss_mb": round(rss_mb(), 1),
                                 "frames": st["frames"], "dropped": st["dropped"],
                                 "record_backlog": st.get("record_backlog"),
                                 "loadavg_1m": round(os.getloadavg()[0], 2)})
            log.info("%s", self.samples[-1])


def soak(minutes: float = 10.0, json_out: str | Path = "soak.json", neurons: int = 1000,
         shape: tuple[int, int] = (512, 512), rate_hz: float = FPS, record: str | Path | None = None,
         seed: int = 0, blas_threads: int | None = 1) -> dict:
    frames = round(minutes * 60 * rate_hz)
    blas_default = limit_blas_threads(blas_threads)
    with tempfile.TemporaryDirectory(prefix="rtdecode-soak-") as tmp:
        chain, card = build_live(tmp, neurons, tuple(shape), seed)
        folder = Path(record) if record is not None else Path(tmp) / "session"
        cfg = SenderConfig(n_neurons=neurons, seed=seed, n_train=1, n_oracle=1, speed=rate_hz / FPS,
                           frame_shape=tuple(shape), max_frames=frames, prerender=300, wait_subscriber_s=300)
        sender, endpoint = start_sender(cfg)
        pub = Publisher()
        recorder = Recorder(folder, neurons, card.frame_shape, meta={"source": "rtdecode bench soak"})
        triggers = TriggerEngine([CallableRule("once_a_second", lambda f: 1.0, threshold=0.5, refractory_s=1.0)],
                                 [ZmqSink(pub)], max_lag_s=0.1, record=recorder.trigger)
        ingest = Ingest([endpoint])
        session = SoakSession(ingest, chain, pub, lag_min=card.window.lag_min, recorder=recorder,
                              triggers=triggers)
        rss_start = rss_mb()
        t0 = time.time()
        try:
            res = session.run(seconds=minutes * 60 / (rate_hz / FPS) * 1.0 + 120, idle_timeout_s=30)
        finally:
            triggers.close()
            stats = session.stats()
            recorder.close(stats)
        rss_end = rss_mb()
        sender.join(timeout=30)
        ingest.close()
        pub.close()
        on_disk = summarize(read_session(folder))
        end = json.loads((folder / "end.json").read_text())
    after_1min = next((s["rss_mb"] for s in session.samples if s["t_s"] >= 60), None)
    out = {
        "benchmark": "soak", "minutes": minutes, "rate_hz": rate_hz, "neurons": neurons, "frame_shape": list(shape),
        "machine": machine_info(),
        "where": "sender: child process, 300 prerendered frames looped; pipeline, recorder writer thread and "
                 "trigger engine: this process; no viewer attached",
        "started": t0, "wall_s": round(res.wall_s, 1),
        "blas_threads": {"default": blas_default, "used": blas_threads if blas_default is not None else None},
        "rss_mb": {"process_start": round(rss_start, 1), "first_frame": round(session.rss_first_frame or float("nan"), 1),
                   "after_1_min": after_1min, "end": round(rss_end, 1),
                   "growth_from_first_frame": round(rss_end - (session.rss_first_frame or rss_start), 1),
                   "growth_after_1_min": None if after_1min is None else round(rss_end - after_1min, 1)},
        "frames_sent": frames, "frames": res.frames, "published": res.published,
        "dropped_messages": stats["dropped"], "lost_frames": res.lost_frames, "missing_frames": frames - res.frames,
        "errors": res.errors, "rejected": stats["rejected"] + res.rejected_frames, "sender_ended": res.ended,
        "records": {"processed": res.frames, "added": end["records"], "on_disk": on_disk["frames"],
                    "lost": res.frames - on_disk["frames"], "write_errors": end["write_errors"],
                    "gaps": on_disk["gaps"], "clean_stop": on_disk["clean_stop"],
                    "record_backlog_max": stats.get("record_backlog_max"), "record_wait_s": stats.get("record_wait_s")},
        "triggers": {"fired": triggers.fired, "recorded": on_disk["triggers"], "enabled": triggers.enabled,
                     "disabled_reason": triggers.disabled_reason},
        "latency_ms": res.latency.summary_ms(), "e2e_ms": res.e2e.summary_ms(),
        "to_wire_ms": triggers.to_wire.summary_ms(), "stages_ms": chain.stage_summary_ms(),
        "samples": session.samples,
        "targets": {"rss_growth_mb_max": 50, "dropped": 0, "lost_records": 0},
    }
    write_json(json_out, out)
    return out


def main(argv=None, progress=False) -> int:
    p = parser("soak", __doc__)
    p.add_argument("--minutes", type=positive_float, default=10.0)
    p.add_argument("--json", "--out", dest="out", default=str(RESULTS / "soak.json"),
                   help="JSON file to write (default %(default)s)")
    p.add_argument("--neurons", type=positive_int, default=1000)
    p.add_argument("--shape", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--rate", type=positive_float, default=FPS, help="frames per second (default 30)")
    p.add_argument("--record", default=None, help="session folder to keep (default: a temporary one)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads in the pipeline process (0: leave the default)")
    args = p.parse_args(argv)
    d = soak(args.minutes, args.out, args.neurons, tuple(args.shape), args.rate, args.record,
             blas_threads=args.blas_threads or None)
    print(json.dumps({k: d[k] for k in ("frames", "dropped_messages", "lost_frames", "rss_mb", "records",
                                         "latency_ms", "e2e_ms", "to_wire_ms")}, indent=2))
    print(f"wrote {args.out}")
    return 0 if d["dropped_messages"] == 0 and d["records"]["lost"] == 0 else 1


if __name__ == "__main__":
    script_main(main)
