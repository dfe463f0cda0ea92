"""End-to-end latency of the live path on the virtual rig, over real loopback sockets.

`run(json_out, neurons=1000, shape=(512, 512))` builds the live chain of the demo (two-photon
extraction -> activity ring -> ridge decoder, random weights of the fitted shape: latency does not
depend on the weights) and streams prerendered two-photon frames into it from a sender process:

- what runs where: the sender (virtual microscope, frames rendered *before* streaming so that rendering
  does not compete with the pipeline) and a subscriber (drains `decoded` and `trigger`, counts them)
  are separate processes; ingest, extraction, decoding, publishing and the trigger engine run on the
  main thread of this process, as in `rtdecode run`;
- `latency`: frame message handed over by the socket -> decoded frame published (p50/p99);
- `e2e`: sender's timestamp -> decoded frame published (includes transport and queueing);
- `to_wire`: decoded frame ready -> trigger sent on the session's PUB socket, with a rule that fires
  on every frame (CallableRule, refractory 0) and a ZmqSink;
- per-stage p50/p99 of the chain;
- at 30 Hz, and at increasing speed factors (1, 2, 4, 8, ...) until frames are dropped or latency
  grows during the run (the queue builds up); the highest factor without either is reported as the
  fastest sustainable rate.

Targets (reported, not asserted; the machine is shared): e2e p99 <= 5 ms at 30 Hz, trigger p99 <= 1 ms.

    rtdecode bench e2e --json benchmarks/results/bench_e2e.json
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rtdecode.bench import RESULTS, machine_info, parser, positive_float, positive_int, script_main, write_json
from rtdecode.latency import Histogram
from rtdecode.live.graph import assemble, live_chain, load_decoder
from rtdecode.live.session import LiveSession, limit_blas_threads
from rtdecode.stimuli.movies import FPS
from rtdecode.rig.sender import SenderConfig, sender_process

log = logging.getLogger(__name__)

TARGETS = {"latency_p99_ms_at_30hz": 5.0, "acquired_to_published_p99_ms_at_30hz": 2.5, "to_wire_p99_ms": 1.0}
BINS = 8


def build_live(folder: str | Path, n_neurons: int = 1000, frame_shape: tuple[int, int] = (512, 512),
               seed: int = 0, bins: int = BINS, lag_min: int = 0, crop: tuple[int, int] | None = None,
               downsample: int | None = None):
    """(chain, card): the demo's extraction chain for the virtual rig `seed` + ring + a ridge decoder
    with random weights of the shape `rtdecode fit` gives. Writes ROIs and the model under `folder`.
    crop, downsample: the registration estimate's region and binning (None: build_chain's defaults)."""
    from rtdecode.decode import model as model_dir
    from rtdecode.decode.ridge import random_decoder
    from rtdecode.extract import build_chain, default_spec
    from rtdecode.extract.register import reference_from
    from rtdecode.extract.rois import load_suite2p
    from rtdecode.rig.twophoton import Microscope

    folder = Path(folder)
    scope = Microscope(n_neurons, seed=seed, frame_shape=frame_shape, fps=FPS)
    scope.save_rois(folder / "rois")
    frames = scope.render_movie(scope.poisson_spikes(30, seed=seed))
    extract = build_chain(default_spec(crop=crop, downsample=downsample), load_suite2p(folder / "rois"),
                          reference_from(frames), fps=FPS)
    dec = random_decoder(n_neurons, bins, (36, 64), lag_min=lag_min, seed=seed)
    card = model_dir.new_card("ridge", n_neurons, lag_min, bins, (36, 64), FPS)
    model_dir.save(folder / "model", card, dec.arrays())
    decoder = load_decoder(folder / "model", ("numpy",))
    card, chain = decoder.card, live_chain(extract.stages, decoder)
    chain.warm_up()
    return chain, card


def _drain(endpoint: str, topics: tuple[str, ...], ready, result, stop_after_s: float) -> None:
    """Child process: subscribe to `topics` on `endpoint`, count messages until the session's end."""
    import zmq

    sock = zmq.Context.instance().socket(zmq.SUB)
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    sock.connect(endpoint)
    ready.put("ok")
    counts: dict[str, int] = {}
    deadline = time.monotonic() + stop_after_s
    while time.monotonic() < deadline:
        if sock.poll(200):
            parts = sock.recv_multipart()
            topic = parts[0].decode()
            if topic == "stats":
                if json.loads(parts[1]).get("end"):
                    break
                continue
            counts[topic] = counts.get(topic, 0) + 1
    result.put(counts)
    sock.close()


class TracedSession(LiveSession):
    """A LiveSession that also keeps every frame's sender -> published delay (to see it build up)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.delays: list[float] = []

    def on_frame(self, msg):
        before = self.result.published
        super().on_frame(msg)
        if self.result.published != before:
            self.delays.append(time.time() - msg.t)


def start_sender(cfg: SenderConfig, timeout_s: float = 300.0):
    """(process, endpoint): the virtual rig's sender in a spawned child process."""
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=sender_process, args=(cfg, ready), daemon=True)
    proc.start()
    endpoint = ready.get(timeout=timeout_s)
    if endpoint.startswith("error"):
        raise RuntimeError(f"the virtual rig's sender failed: {endpoint}")
    return proc, endpoint


def run_once(chain, card, speed: float, frames: int, n_neurons: int, frame_shape, seed: int = 0,
             prerender: int = 300, record: str | Path | None = None, trigger_every_frame: bool = True,
             freshness: str = "every_frame", max_age_s: float = 0.05,
             priority: int | None = None, cpu: int | None = None) -> dict:
    """One streamed run: sender at `speed` x 30 Hz for `frames` frames -> the live session. Returns stats.
    cpu, priority: the live loop's CPU and SCHED_FIFO priority (the rig file's cpu.pipeline and
    cpu.priority, rtdecode.live.cpu.Placement; None: as `rtdecode run` by default)."""
    from rtdecode.live.cpu import Placement
    from rtdecode.sources.ingest import Ingest
    from rtdecode.outputs.publish import Publisher
    from rtdecode.outputs.triggers import CallableRule, TriggerEngine
    from rtdecode.outputs.triggers.sinks import ZmqSink

    chain.reset()
    chain.stage_latency = [Histogram() for _ in chain.stages]
    cfg = SenderConfig(n_neurons=n_neurons, seed=seed, n_train=1, n_oracle=1, speed=speed, frame_shape=frame_shape,
                       max_frames=frames, prerender=min(prerender, frames), wait_subscriber_s=120)
    sender, endpoint = start_sender(cfg)
    pub = Publisher()
    ctx = mp.get_context("spawn")
    dready, dresult = ctx.Queue(), ctx.Queue()
    drain = ctx.Process(target=_drain, args=(pub.endpoint, ("decoded", "trigger", "stats"), dready, dresult,
                                             frames / (FPS * max(speed, 1e-3)) + 120), daemon=True)
    drain.start()
    dready.get(timeout=60)
    time.sleep(0.3)  # the subscription reaches the publisher
    rules = [CallableRule("every_frame", lambda f: 1.0, threshold=0.5, refractory_s=0.0)] if trigger_every_frame else []

    def make_triggers(recorder, pub):
        return TriggerEngine(rules, [ZmqSink(pub)], max_lag_s=0.1,
                             record=recorder.trigger if recorder is not None else None)

    graph = assemble(Ingest([endpoint], freshness=freshness), chain, lambda: pub, n_neurons=n_neurons,
                     frame_shape=card.frame_shape, fps=FPS, record=record, meta={"source": "bench e2e"},
                     triggers=make_triggers)
    ingest, recorder, triggers = graph.ingest, graph.recorder, graph.triggers
    session = graph.session(TracedSession, lag_min=card.window.lag_min, max_age_s=max_age_s,
                            placement=Placement(cpu, priority))
    load0 = os.getloadavg()
    try:
        res = session.run(seconds=frames / (FPS * max(speed, 1e-3)) + 60, idle_timeout_s=5)
    finally:
        stats = session.stats()
        pub.send("stats", None, end=True)
    drained = dresult.get(timeout=30) if drain.is_alive() or not dresult.empty() else {}
    drain.join(timeout=10)
    graph.close(stats)
    sender.join(timeout=30)
    d = np.asarray(session.delays)
    q = max(len(d) // 4, 1)
    growth_ms = float(np.median(d[-q:]) - np.median(d[:q])) * 1e3 if len(d) >= 8 else float("nan")
    return {
        "speed": speed, "rate_hz": round(FPS * speed, 1), "frames_sent": frames, "frames": res.frames,
        "published": res.published, "dropped_messages": stats["dropped"], "lost_frames": res.lost_frames,
        "missing_frames": frames - res.frames, "sender_ended": res.ended, "errors": res.errors,
        "latency_ms": res.latency.summary_ms(), "e2e_ms": res.e2e.summary_ms(),
        "freshness": freshness, "max_age_ms": max_age_s * 1e3, "skipped_frames": res.skipped_frames,
        "arrived_to_published_ms": stats["arrived_to_published_ms"],
        "acquired_to_published_ms": stats["acquired_to_published_ms"],
        "acquired_to_trigger_ms": triggers.from_acquisition.summary_ms(), "stale_frames": triggers.stale_frames,
        "suppressed_stale": triggers.suppressed_stale, "clock": ingest.clock_summary(),
        "to_wire_ms": triggers.to_wire.summary_ms(), "triggers_fired": triggers.fired, "cpu": stats.get("cpu"),
        "triggers_enabled": triggers.enabled, "triggers_disabled_reason": triggers.disabled_reason,
        "stages_ms": chain.stage_summary_ms(), "delay_growth_ms": round(growth_ms, 3),
        "received_by_subscriber": drained, "wall_s": round(res.wall_s, 2),
        "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        **({"recorded": stats.get("recorded"), "record_errors": stats.get("record_errors")} if recorder else {}),
    }


def sustainable(r: dict, max_growth_ms: float = 5.0) -> bool:
    """No frame lost or dropped and the delay did not build up during the run."""
    return (r["dropped_messages"] == 0 and r["lost_frames"] == 0 and r["missing_frames"] == 0 and r["errors"] == 0
            and r["sender_ended"] and not (r["delay_growth_ms"] > max_growth_ms))


def _machine_info() -> dict:
    return machine_info(note="shared development machine (2 cores, other sessions' jobs may run): absolute "
                             "times are noisy")


def run(json_out: str | Path, neurons: int = 1000, shape: tuple[int, int] = (512, 512), seconds_30hz: float = 20.0,
        seconds_per_step: float = 4.0, speeds: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64), seed: int = 0,
        blas_threads: int | None = 1, cpu: int | None = None, priority: int | None = None, progress=None, crop: tuple[int, int] | None = None, downsample: int | None = None, command: str = "") -> dict:
    """Run the benchmark and write `json_out`; returns the dict written. The pipeline runs with
    `blas_threads` OpenBLAS threads (None: the default), on CPU `cpu` and at real-time `priority`
    (None: `rtdecode run`'s defaults, not pinned, normal scheduling); at 30 Hz it is also run with
    the default BLAS threads for comparison."""
    say = progress or (lambda s: None)
    shape = tuple(shape)
    blas_default = limit_blas_threads(None)
    with tempfile.TemporaryDirectory(prefix="rtdecode-e2e-") as tmp:
        t0 = time.perf_counter()
        chain, card = build_live(tmp, neurons, shape, seed, crop=crop, downsample=downsample)
        say(f"chain built and warmed up in {time.perf_counter() - t0:.1f} s: {chain.stage_names()}")
        frames30 = round(seconds_30hz * FPS)
        at30_default = None
        if blas_threads is not None and blas_default is not None and blas_threads != blas_default:
            say(f"30 Hz, {blas_default} BLAS threads (default): {frames30} frames")
            at30_default = run_once(chain, card, 1.0, frames30, neurons, shape, seed)
            at30_default["blas_threads"] = blas_default
            say(f"30 Hz, default BLAS threads: latency {at30_default['latency_ms']}")
            limit_blas_threads(blas_threads)
        say(f"30 Hz: {frames30} frames")
        at30 = run_once(chain, card, 1.0, frames30, neurons, shape, seed, cpu=cpu, priority=priority)
        at30["blas_threads"] = limit_blas_threads(None)
        say(f"30 Hz: latency {at30['latency_ms']}, to_wire {at30['to_wire_ms']}")
        search = []
        best = None
        for s in speeds:
            n = int(min(max(seconds_per_step * FPS * s, 150), 3000))
            r = run_once(chain, card, float(s), n, neurons, shape, seed, prerender=300, cpu=cpu, priority=priority)
            r["blas_threads"] = limit_blas_threads(None)
            r["sustainable"] = sustainable(r)
            search.append(r)
            say(f"x{s} ({r['rate_hz']} Hz): sustainable={r['sustainable']} dropped={r['dropped_messages']} "
                f"growth={r['delay_growth_ms']} ms latency p99={r['latency_ms']['p99']} ms")
            if not r["sustainable"]:
                break
            best = r
        # the same overload with the closed-loop policy: only the newest frame, no trigger on a stale one
        latest = None
        if search:
            s = search[-1]["speed"]
            n = int(min(max(seconds_per_step * FPS * s, 150), 3000))
            latest = run_once(chain, card, float(s), n, neurons, shape, seed, prerender=300, freshness="latest",
                              cpu=cpu, priority=priority)
            say(f"x{s} with freshness latest: skipped {latest['skipped_frames']}, fired {latest['triggers_fired']}, "
                f"suppressed (stale) {latest['suppressed_stale']}, acquired->published p99 "
                f"{latest['acquired_to_published_ms']['p99']} ms")
    if blas_default is not None:
        limit_blas_threads(blas_default)
    out = {
        "benchmark": "e2e", "command": command, "register_crop": None if crop is None else list(crop), "register_downsample": downsample, "neurons": neurons, "frame_shape": list(shape), "bins": BINS,
        "decoder": "ridge (random weights, fitted shape), numpy backend", "machine": _machine_info(),
        "where": {
            "sender": "child process (spawn): virtual microscope frames prerendered before streaming (300 frames "
                      "looped), then stim + frame messages on an XPUB at speed x 30 Hz",
            "pipeline": "main thread of this process: ingest (SUB) -> extraction -> ring -> decode -> publish (PUB) "
                        "-> trigger engine (ZmqSink on the same PUB)",
            "subscriber": "child process (spawn): SUB on 'decoded' and 'trigger', counts what it received",
            "recording": "off in this benchmark (rtdecode bench soak records)",
            "blas": "BLAS in the pipeline process limited to `blas_threads.used` threads (threadpoolctl, "
                    "live.session.limit_blas_threads); `at_30hz_default_blas_threads` is the same run with the "
                    "default thread count",
        },
        "definitions": {
            "latency_ms": "frame message handed over by the SUB socket -> decoded frame published",
            "arrived_to_published_ms": "the same, p50/p99",
            "acquired_to_published_ms": "frame acquired (sender's t mapped to the local clock by the per-publisher "
                                        "minimum-delay offset estimate) -> decoded frame published: includes the "
                                        "time the frame waited in the socket queues",
            "acquired_to_trigger_ms": "frame acquired -> trigger sent by the ZmqSink",
            "suppressed_stale": "triggers not sent because their frame was older than max_age_ms since acquisition",
            "e2e_ms": "sender timestamp (time.time) -> decoded frame published (includes loopback transport)",
            "to_wire_ms": "decoded frame ready (chain done) -> trigger sent by the ZmqSink (rule fires every frame)",
            "stages_ms": "time per frame of each stage of the chain",
            "sustainable": "no dropped message, no lost frame, and the sender->published delay of the last quarter "
                           "of the run not more than 5 ms above the first quarter",
        },
        "targets": TARGETS,
        "blas_threads": {"default": blas_default, "used": blas_threads if blas_default is not None else None},
        "at_30hz": at30,
        "at_30hz_default_blas_threads": at30_default,
        "cpu": {"pipeline": cpu, "priority": priority},
        "search": search,
        "latest_at_fastest_tried": latest,
        "fastest_sustainable": None if best is None else {
            "speed": best["speed"], "rate_hz": best["rate_hz"], "latency_ms": best["latency_ms"],
            "to_wire_ms": best["to_wire_ms"], "e2e_ms": best["e2e_ms"]},
        "fastest_tried_failed": None if not search or search[-1]["sustainable"] else search[-1]["speed"],
        "meets": {"latency_p99_at_30hz": at30["latency_ms"]["p99"] <= TARGETS["latency_p99_ms_at_30hz"],
                  "acquired_to_published_p99_at_30hz":
                      at30["acquired_to_published_ms"]["p99"] <= TARGETS["acquired_to_published_p99_ms_at_30hz"],
                  "to_wire_p99": at30["to_wire_ms"]["p99"] <= TARGETS["to_wire_p99_ms"]},
    }
    write_json(json_out, out)
    return out


def summary_lines(d: dict) -> list[str]:
    a = d["at_30hz"]
    lines = [f"e2e bench: {d['neurons']} neurons, {d['frame_shape'][0]}x{d['frame_shape'][1]} frames",
             (f"30 Hz: acquired->published p50 {a['acquired_to_published_ms']['p50']} ms "
              f"p99 {a['acquired_to_published_ms']['p99']} ms; acquired->trigger p99 "
              f"{a['acquired_to_trigger_ms']['p99']} ms"),
             (f"30 Hz: arrival->published p50 {a['latency_ms']['p50']} ms p99 {a['latency_ms']['p99']} ms; "
              f"ready->trigger p50 {a['to_wire_ms']['p50']} ms p99 {a['to_wire_ms']['p99']} ms; dropped "
              f"{a['dropped_messages']}")]
    for name, s in a["stages_ms"].items():
        lines.append(f"  stage {name}: p50 {s['p50']} ms p99 {s['p99']} ms")
    if d.get("at_30hz_default_blas_threads"):
        b = d["at_30hz_default_blas_threads"]
        lines.append(f"30 Hz with {b['blas_threads']} BLAS threads (default): p50 {b['latency_ms']['p50']} ms "
                     f"p99 {b['latency_ms']['p99']} ms; decode stage p50 {b['stages_ms']['decode']['p50']} ms")
    f = d["fastest_sustainable"]
    lines.append("fastest sustainable: none" if f is None else
                 f"fastest sustainable: x{f['speed']} ({f['rate_hz']} Hz), latency p99 {f['latency_ms']['p99']} ms")
    return lines


def freshness_run(json_out: str | Path, speed: float = 32.0, frames: int = 3000, neurons: int = 1000,
                  shape: tuple[int, int] = (512, 512), seed: int = 0, command: str = "") -> dict:
    """The same stream at `speed` x 30 Hz, once with freshness `every_frame`, once with `latest`
    (max_age 50 ms, a trigger rule that fires on every frame): how old the frames that triggers fire
    on are, and how many were suppressed as stale."""
    limit_blas_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        chain, card = build_live(tmp, neurons, shape, seed)
        runs = {fresh: run_once(chain, card, speed, frames, neurons, shape, seed, prerender=300, freshness=fresh)
                for fresh in ("every_frame", "latest")}
    out = {"command": command, "benchmark": "e2e freshness", "speed": speed, "frames": frames, "neurons": neurons,
           "shape": list(shape), "machine": _machine_info(), "runs": runs}
    write_json(json_out, out)
    return out


def main(argv=None, progress=False) -> int:
    p = parser("e2e", __doc__)
    p.add_argument("--json", "--out", dest="out", default=str(RESULTS / "bench_e2e.json"),
                   help="JSON file to write (default %(default)s)")
    p.add_argument("--neurons", type=positive_int, default=1000)
    p.add_argument("--shape", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--seconds", type=positive_float, default=20.0, help="length of the 30 Hz run")
    p.add_argument("--step-seconds", type=positive_float, default=4.0, help="sending time per speed factor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                   help="registration region (default: build_chain's, 320 320)")
    p.add_argument("--downsample", type=positive_int, default=None,
                   help="registration binning (default: build_chain's, 2 for regions of 320 px and more)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads in the pipeline process (0: leave the default)")
    p.add_argument("--cpu", type=int, default=None, metavar="N",
                   help="pin the live loop to CPU N (the rig file's cpu.pipeline; default: not pinned)")
    p.add_argument("--priority", type=int, default=None, choices=range(1, 100), metavar="1..99",
                   help="run the live loop and ZeroMQ's I/O threads under SCHED_FIFO at this priority (the rig "
                        "file's cpu.priority; default: normal scheduling)")
    p.add_argument("--freshness-at", type=positive_float, default=None, metavar="SPEED",
                   help="instead: stream 3000 frames at SPEED x 30 Hz with freshness every_frame, then latest")
    args = p.parse_args(argv)
    if args.freshness_at is not None:
        import sys

        d = freshness_run(args.out, speed=args.freshness_at, neurons=args.neurons, shape=tuple(args.shape),
                          seed=args.seed, command="rtdecode bench e2e " + " ".join(sys.argv[3:] if argv is None else argv))
        for name, r in d["runs"].items():
            print(f"{name}: frames {r['frames']}, skipped {r['skipped_frames']}, triggers fired {r['triggers_fired']}, "
                  f"suppressed stale {r['suppressed_stale']}, acquired->trigger max {r['acquired_to_trigger_ms']['max']} ms")
        print(f"wrote {args.out}")
        return 0
    import sys

    say = (lambda s: log.info("bench e2e: %s", s)) if progress else None
    d = run(args.out, neurons=args.neurons, shape=tuple(args.shape), seconds_30hz=args.seconds,
            seconds_per_step=args.step_seconds, seed=args.seed, blas_threads=args.blas_threads or None, cpu=args.cpu,
            priority=args.priority, progress=say,
            crop=None if args.crop is None else tuple(args.crop), downsample=args.downsample, command="rtdecode bench e2e " + " ".join(sys.argv[3:] if argv is None else argv))
    for line in summary_lines(d):
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    script_main(main)
