"""`rtdecode demo`: the whole live path on the virtual rig, over real ZeroMQ sockets on loopback.

1. Calibration block: the virtual mouse watches `train` movies; its two-photon frames go through
   the same extraction chain the live path uses, and a ridge decoder is fitted on the result.
2. Live block: a separate sender process streams held-out (`oracle`) movies at 30 Hz as rtframe
   messages; rtdecode ingests, extracts, decodes and publishes every frame.
3. Report: pixel_corr of the decoded stream against the stimulus stream, latency, frames, dropped;
   a PNG of stimulus vs reconstruction, and an animated GIF (`movie`) of a few seconds of the first
   scored trial: stimulus | reconstruction | uncertainty (when the model publishes one) side by side.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from rtdecode import metrics
from rtdecode.decode import model as model_dir
from rtdecode.decode import ridge
from rtdecode.sources.ingest import Ingest
from rtdecode.live.graph import assemble, live_chain, load_decoder
from rtdecode.live.session import StopOnSignals, limit_blas_threads
from rtdecode.outputs.publish import Publisher
from rtdecode.rig import VirtualRig, rf_patch_mask
from rtdecode.stimuli.movies import FPS
from rtdecode.rig.prepare import calibrate as calibrate_block
from rtdecode.rig.sender import SenderConfig, sender_process
from rtdecode.rig.twophoton import Microscope
from rtdecode.outputs.triggers import LuminanceRule, TriggerEngine
from rtdecode.outputs.triggers.sinks import ZmqSink

log = logging.getLogger(__name__)


def calibrate(rig: VirtualRig, scope: Microscope, out: Path, progress: bool, n_reference: int = 50):
    """Run the calibration block through extraction (ROIs written to out/rois). Returns (extraction
    stages, per-trial (activity (N, T), movie (T, 36, 64)))."""
    return calibrate_block(rig, scope, out / "rois", progress, n_reference)


def side_by_side(pairs: list[tuple[np.ndarray, np.ndarray]], path: Path, n: int = 6, zoom: int = 4) -> None:
    """PNG: for every scored trial, `n` evenly spaced frames, stimulus above reconstruction."""
    from PIL import Image

    gap = 2
    h, w = pairs[0][1].shape[1:]
    canvas = np.full((len(pairs) * (2 * h + 2 * gap), n * (w + gap) - gap), 255, np.uint8)
    for row, (rec, stim) in enumerate(pairs):
        y0 = row * (2 * h + 2 * gap)
        idx = np.linspace(metrics.SKIP_FRAMES, stim.shape[0] - 1, n).astype(int)
        for c, k in enumerate(idx):
            x0 = c * (w + gap)
            canvas[y0:y0 + h, x0:x0 + w] = np.clip(stim[k], 0, 255)
            canvas[y0 + h + gap:y0 + 2 * h + gap, x0:x0 + w] = np.clip(rec[k], 0, 255)
    Image.fromarray(canvas).resize((canvas.shape[1] * zoom, canvas.shape[0] * zoom), Image.NEAREST).save(path)


MOVIE_SECONDS = 5.0  # of the first scored trial, from its frame metrics.SKIP_FRAMES on
MOVIE_FPS = 10  # every third frame of the 30 Hz stream, played at its real speed (GIF times are in 10 ms)
MOVIE_TITLES = ("stimulus", "reconstruction", "uncertainty")


def movie(rec: np.ndarray, stim: np.ndarray, path: Path, spread: np.ndarray | None = None,
          seconds: float = MOVIE_SECONDS, fps: int = MOVIE_FPS, zoom: int = 4) -> dict:
    """Animated GIF (Pillow) of one trial: stimulus | reconstruction | uncertainty side by side, each panel
    titled, `seconds` of it from frame metrics.SKIP_FRAMES on, every (FPS / fps)-th frame, played at the
    stream's speed. rec, stim, spread: (T, H, W) on the 0-255 scale (spread None: two panels; else white is
    its 99th percentile over the clip). Returns {path, frames, fps, panels}; no file when the trial is
    too short."""
    from PIL import Image, ImageDraw

    step = max(1, int(round(FPS / fps)))
    idx = np.arange(metrics.SKIP_FRAMES, stim.shape[0], step)[:int(round(seconds * fps))]
    panels = [stim, rec] + ([spread] if spread is not None else [])
    titles = list(MOVIE_TITLES[:len(panels)])
    if len(idx) == 0:
        return {"path": None, "frames": 0, "fps": fps, "panels": titles}
    if spread is not None:
        top = float(np.percentile(spread[idx], 99)) or 1.0
        panels[2] = np.asarray(spread, np.float32) * (255.0 / top)
    h, w = stim.shape[1:]
    gap, head = 2, 14
    width = len(panels) * (w + gap) - gap
    frames = []
    for k in idx:
        row = np.full((h, width), 255, np.uint8)
        for c, p in enumerate(panels):
            row[:, c * (w + gap):c * (w + gap) + w] = np.clip(p[k], 0, 255)
        img = Image.new("L", (width * zoom, h * zoom + head), 255)
        img.paste(Image.fromarray(row).resize((width * zoom, h * zoom), Image.NEAREST), (0, head))
        draw = ImageDraw.Draw(img)
        for c, t in enumerate(titles):
            draw.text((c * (w + gap) * zoom + 2, 1), t if c else f"{t}  frame {int(k)}", fill=0)
        frames.append(img)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)), loop=0)
    return {"path": str(path), "frames": len(frames), "fps": fps, "panels": titles}


def run_demo(out: str | Path = "demo_out", seconds: float = 40.0, headless: bool = True,
             n_neurons: int = 2000, n_train: int = 60, seed: int = 0, speed: float = 1.0,
             frame_shape: tuple[int, int] = (512, 512), progress: bool = True,
             screenshot: str | Path | None = None, rig: str = "realistic") -> dict:
    """Run the demo; returns the summary (also written to out/summary.json). `screenshot`: a PNG the
    viewer renders offscreen near the end of the live block. `rig`: the population profile
    (rtdecode.rig.population.PROFILES)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    n_oracle = max(1, int(np.ceil(seconds * FPS / 300)))
    profile = rig
    rig = VirtualRig(n_neurons, seed, n_train=n_train, n_oracle=n_oracle, rig=profile)
    scope = Microscope(n_neurons, seed=seed, frame_shape=frame_shape, fps=FPS)

    # The sender starts first: it renders its movies while we calibrate.
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    cfg = SenderConfig(n_neurons=n_neurons, seed=seed, n_train=n_train, n_oracle=n_oracle,
                       speed=speed, frame_shape=frame_shape, wait_subscriber_s=600,
                       max_frames=int(round(seconds * FPS)), rig=rig.rig)
    sender = ctx.Process(target=sender_process, args=(cfg, ready), daemon=True)
    sender.start()

    extract_chain, calib = calibrate(rig, scope, out, progress)
    nv = max(1, len(calib) // 5)
    dec, info = ridge.fit(lambda: calib[:-nv], lambda: calib[-nv:])
    card = model_dir.new_card("ridge", n_neurons, dec.lag_min, dec.basis.shape[0], dec.frame_shape, FPS,
                              training={"source": "demo calibration block (two-photon, extracted live chain)",
                                        "trials": len(calib), **info})
    model_dir.save(out / "model", card, dec.arrays())
    decoder = load_decoder(out / "model", ("numpy",))  # the model's own predict_window, as `rtdecode run` falls back to
    card = decoder.card
    t_fit = time.monotonic() - t_start

    endpoint = ready.get(timeout=120)
    if endpoint.startswith("error"):
        raise RuntimeError(f"the virtual rig's sender failed: {endpoint}")
    session_dir = out / "session"
    if session_dir.exists():  # the demo's output folder is rewritten on every run
        import shutil

        shutil.rmtree(session_dir)
    limit_blas_threads(1)  # after the fit (which wants every core): the live loop shares 2 cores with the rig
    decoder.ring.warm_up()
    decoder.stage.warm_up()

    def triggers(recorder, pub):  # an example closed-loop rule: the reconstruction is bright inside the RF patch
        return TriggerEngine([LuminanceRule("bright_patch", 170.0, card.frame_shape, rf_patch_mask(),
                                            consecutive=3, refractory_s=1.0)],
                             [ZmqSink(pub)], max_lag_s=0.1, record=recorder.trigger)

    graph = assemble(Ingest([endpoint]), live_chain(extract_chain.stages, decoder), Publisher,
                     n_neurons=n_neurons, frame_shape=card.frame_shape, fps=FPS, record=session_dir,
                     meta={"source": "rtdecode demo (virtual rig)", "sender": endpoint, "model_card": card.to_dict()},
                     triggers=triggers, uncertainty=decoder.uncertainty)
    pub, recorder = graph.publisher, graph.recorder
    viewer = None
    if screenshot is not None or (not headless and os.environ.get("DISPLAY")):
        import subprocess
        import sys

        np.save(out / "evaluation_mask.npy", rf_patch_mask())
        cmd = [sys.executable, "-m", "rtdecode", "view", pub.endpoint, endpoint, "--rois", str(out / "rois"),
               "--mask", str(out / "evaluation_mask.npy")]
        env = dict(os.environ)
        if screenshot is not None:
            cmd += ["--seconds", str(max(seconds / speed - 1.0, 1.0)), "--screenshot", str(screenshot)]
            env["QT_QPA_PLATFORM"] = "offscreen"
        viewer = subprocess.Popen(cmd, env=env)
    session = graph.session(lag_min=card.window.lag_min, collect=True)
    log.info("live block: %d oracle trials from %s, decoded stream on %s", n_oracle, endpoint, pub.endpoint)
    try:
        with StopOnSignals(session.stop):  # SIGTERM / SIGINT: the clean path (rtdecode.live.session.StopOnSignals)
            res = session.run(seconds=seconds + 30)
    finally:
        counts = graph.ingest.counts()
        graph.close(session.stats(), reason=session.stop_reason)
    sender.join(timeout=10)
    triggers = graph.triggers
    if viewer is not None:
        if screenshot is not None:
            viewer.wait(timeout=60)
        else:
            viewer.terminate()

    # Group the decoded stream by trial and score it against the stimulus stream.
    pairs, spreads = [], []
    for trial in sorted({k[0] for k in res.stimuli}):
        frames = sorted(f for (t, f) in res.stimuli if t == trial)
        have = [f for f in frames if (trial, f) in res.decoded]
        if len(have) <= metrics.SKIP_FRAMES + 1:
            continue
        rec = np.stack([res.decoded[(trial, f)] for f in have])
        stim = np.stack([res.stimuli[(trial, f)] for f in have]).astype(np.float32)
        pairs.append((rec, stim))
        spreads.append(np.stack([res.uncertainty[(trial, f)] for f in have])
                       if all((trial, f) in res.uncertainty for f in have) else None)
    scores = metrics.score(pairs, rf_patch_mask()) if pairs else {"pixel_corr": float("nan")}
    summary = {
        "pixel_corr": scores["pixel_corr"],
        "frame_corr": scores.get("frame_corr"),
        "pixel_corr_full": scores.get("pixel_corr_full"),
        "latency_ms": res.latency.summary_ms(),
        "e2e_latency_ms": res.e2e.summary_ms(),
        "frames": res.frames,
        "published": res.published,
        "dropped": counts["dropped"],
        "rejected": counts["rejected"] + res.rejected_frames,
        "errors": res.errors,
        "trials_scored": len(pairs),
        "neurons": n_neurons,
        "calibration_trials": n_train,
        "rig": profile,
        "frame_shape": list(frame_shape),
        "speed": speed,
        "decoder": "ridge",
        "calibration_and_fit_s": round(t_fit, 1),
        "live_s": round(res.wall_s, 1),
        "total_s": round(time.monotonic() - t_start, 1),
        "sender_ended": res.ended,
        "session": str(session_dir),
        "recorded_frames": recorder.written,
        "triggers": triggers.stats(),
    }
    if pairs:
        side_by_side(pairs, out / "stimulus_vs_reconstruction.png")
        clip = movie(*pairs[0], out / "demo_movie.gif", spread=spreads[0])
        summary |= {"movie": clip["path"], "movie_frames": clip["frames"], "movie_fps": clip["fps"],
                    "movie_panels": clip["panels"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
