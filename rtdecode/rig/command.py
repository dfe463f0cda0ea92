"""`rtdecode rig`: the virtual two-photon rig as a process of its own, streaming like a real rig.

    rtdecode rig [--frames tcp://127.0.0.1:5555] [--stim tcp://127.0.0.1:5570] [--seconds S]
                 [--tier oracle|train] [--speed X] [--neurons N] [--seed K]
                 [--write-rois DIR [--model DIR]] [--prepare-only]

Frames go out like ScanImage's user function sends them (rtframe `frame`, uint16, on the --frames
socket), the stimulus like the stimulus PC (rtframe `stim`, on the --stim socket, its own `seq`),
at 30 Hz x --speed; a `stats` end message closes the frames stream. Both sockets are XPUB and bind:
the rig waits (--wait seconds) for a subscriber, so `rtdecode run` may start after it.

With --ephys it streams a virtual Neuropixels-like probe in the virtual mouse's V1 instead, as the Open
Ephys GUI does (rtdecode.rig.probe: voltage on the ZMQ Interface, sorted spikes on the Event
Broadcaster, the stimulus PC on --stim; docs/ephys.md):

    rtdecode rig --ephys --tier train --seconds 60 --probe-channels 64

With --openephys RECORDING it replays an Open Ephys Binary recording instead, in the ZMQ Interface
and Event Broadcaster protocols (the emulator, on --data-port, and --broadcaster-port if given), and --model DIR
writes a stand-in decoder with one input per channel of the recording (fitted on the virtual
mouse's first C neurons: it exercises the live path, it cannot decode that recording). This is what
`configs/virtual_rig_ephys.yaml` needs:

    rtdecode rig --openephys ../shared/data/openephys_v0.6.7_binary --model models/virtual_ephys

--write-rois DIR writes the microscope's ROIs (suite2p layout) there before streaming; with --model
DIR it also fits a decoder on a calibration block (a minute or more; kept when already written for
the same --neurons / --seed). This is what `configs/virtual_rig_2p.yaml` needs:

    rtdecode rig --write-rois data/virtual/rois --model models/virtual
"""

from __future__ import annotations

import argparse
import logging
import math

log = logging.getLogger(__name__)


def add_rig_parser(subparsers) -> argparse.ArgumentParser:
    from rtdecode.rig.population import PROFILES

    p = subparsers.add_parser(
        "rig", help="the virtual rig as its own process: two-photon frames (or, with --ephys, a probe's voltage and "
                    "sorted spikes as the Open Ephys GUI sends them) and the stimulus over ZeroMQ",
        description="Streams the virtual rig's two-photon frames (like ScanImage) and stimulus messages (like the "
                    "stimulus PC) in rtframe v1 on two sockets, at 30 Hz. With --write-rois (and --model) it first "
                    "writes the ROIs (and a decoder fitted on a calibration block) that configs/virtual_rig_2p.yaml "
                    "reads. With --ephys: a virtual Neuropixels-like probe in the Open Ephys plugins' protocols "
                    "(configs/virtual_probe*.yaml, docs/ephys.md).")
    p.add_argument("--frames", default="tcp://127.0.0.1:5555", metavar="ADDRESS",
                   help="bind address of the frames socket (default tcp://127.0.0.1:5555, as ScanImage's driver)")
    p.add_argument("--stim", default="tcp://127.0.0.1:5570", metavar="ADDRESS",
                   help="bind address of the stimulus socket (default tcp://127.0.0.1:5570); 'same' sends the "
                        "stimulus on the frames socket")
    p.add_argument("--seconds", type=float, default=None,
                   help="stream this long (default: every movie of --tier once; 4 oracle movies = 40 s)")
    p.add_argument("--tier", choices=("oracle", "train"), default="oracle",
                   help="which movies: oracle (held out, default) or train (a calibration block)")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time 30 Hz (default); 0 = as fast as possible")
    p.add_argument("--neurons", type=int, default=1000, help="neurons / ROIs (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="the virtual mouse (default 0)")
    p.add_argument("--train-trials", type=int, default=12, help="10-s movies in the calibration block (default 12)")
    p.add_argument("--rig", default="realistic", choices=tuple(PROFILES),
                   help="the virtual mouse's population profile: realistic (default; calibrated to mouse V1, "
                        "python benchmarks/research/rig.py), realistic_v1 (its first calibration), "
                        "easy (nearly linear)")
    p.add_argument("--shape", type=int, nargs=2, default=(512, 512), metavar=("H", "W"),
                   help="frame size (default 512 512)")
    p.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a subscriber (default 600)")
    p.add_argument("--write-rois", default=None, metavar="DIR", help="write the ROIs (suite2p layout) here first")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="with --write-rois: also fit a decoder on a calibration block and write it here")
    p.add_argument("--force", action="store_true", help="rewrite --write-rois / --model even if up to date")
    p.add_argument("--prepare-only", action="store_true", help="write the files, do not stream")
    v = p.add_argument_group("ephys (a virtual Neuropixels-like probe in V1 instead of the two-photon rig; "
                             "docs/ephys.md)")
    v.add_argument("--ephys", action="store_true",
                   help="stream the virtual mouse's units as the Open Ephys GUI does: 30 kHz voltage of "
                        "--probe-channels on the ZMQ Interface (--data-port, heartbeat +1), their sorted spikes on "
                        "the Event Broadcaster (--broadcaster-port, default data port + 2) and the stimulus on --stim")
    v.add_argument("--probe-channels", type=int, default=384, metavar="C",
                   help="recording channels of the probe (default 384; 64 keeps tests light)")
    v.add_argument("--units", type=int, default=None, metavar="N",
                   help="units on the probe (default 0.8 per channel: 307 on 384 channels, 51 on 64)")
    v.add_argument("--block-size", type=int, default=1024, help="samples per processing block (default 1024)")
    v.add_argument("--stim-clock-offset-ms", type=float, default=0.0,
                   help="the stimulus PC's clock minus this PC's, ms (default 0)")
    e = p.add_argument_group("ephys (an Open Ephys recording instead of the two-photon rig)")
    e.add_argument("--openephys", default=None, metavar="RECORDING",
                   help="replay this Open Ephys Binary recording as the GUI's ZMQ Interface and Event Broadcaster")
    e.add_argument("--data-port", type=int, default=5556, help="ZMQ Interface data port (heartbeat +1; default 5556)")
    e.add_argument("--broadcaster-port", type=int, default=None, metavar="PORT",
                   help="also publish the Event Broadcaster stream on PORT (e.g. 5558; the replay then waits for a "
                        "subscriber there too; the live loop does not read it). Default: off; with --ephys: data port + 2 "
                        "(-1: off)")
    return p


def write_ephys_model(recording: str, model_dir: str, seed: int = 0, force: bool = False) -> dict:
    """A ridge decoder with one input per channel of `recording`, fitted on the virtual mouse's first
    C neurons (spike counts per frame): a stand-in that lets a rig file run the live ephys path."""
    import json
    import tempfile
    from pathlib import Path

    from rtdecode.offline.fit import fit_dataset
    from rtdecode.rig import VirtualRig
    from rtdecode.sources.openephys.recording import load_recording

    n_ch = int(load_recording(recording).continuous[0].data.shape[1])
    card_path = Path(model_dir) / "card.json"
    if not force and card_path.is_file() and json.loads(card_path.read_text()).get("neurons") == n_ch:
        return {"model": model_dir, "inputs": n_ch, "written": False}
    with tempfile.TemporaryDirectory(prefix="rtdecode-ephys-model-") as tmp:
        VirtualRig(n_ch, seed, n_train=8, n_oracle=1).write_dataset(tmp)
        fit_dataset(tmp, model_dir, "ridge", progress=False)
    return {"model": model_dir, "inputs": n_ch, "written": True}


def _run_openephys(args) -> int:
    from rtdecode.sources.openephys.emulator import Emulator

    if args.model:
        r = write_ephys_model(args.openephys, args.model, args.seed, args.force)
        print(f"{'wrote' if r['written'] else 'kept (up to date)'} a stand-in model with {r['inputs']} inputs "
              f"in {r['model']}", flush=True)
    if args.prepare_only:
        return 0
    emu = Emulator(args.openephys, host="127.0.0.1", data_port=args.data_port, broadcaster_port=args.broadcaster_port,
                   speed=args.speed, wait_subscriber_s=args.wait)
    eb_text = f", Event Broadcaster on {emu.broadcaster_port}" if emu.broadcaster_port else ""
    print(f"virtual ephys rig: {args.openephys} on tcp://127.0.0.1:{emu.data_port} (heartbeat +1){eb_text}; "
          f"waiting up to {args.wait:g} s for a subscriber", flush=True)
    emu.start(replay=False)
    try:
        stats = emu.run()
    finally:
        emu.close()
    print(f"virtual ephys rig: replay done ({str(stats)[:300]})", flush=True)
    return 0


def _run_probe(args) -> int:
    """`rtdecode rig --ephys`: the virtual probe (rtdecode.rig.probe) on the Open Ephys plugins' sockets."""
    import zmq

    from rtdecode.errors import ConfigError
    from rtdecode.rig import VirtualRig
    from rtdecode.rig.probe import Probe, ProbeStreamer, make_session
    from rtdecode.stimuli.movies import FPS

    if not 1 <= args.data_port <= 65533:
        raise ConfigError(f"--data-port must lie in 1..65533 (the heartbeat is on +1), got {args.data_port}")
    eb_port = args.data_port + 2 if args.broadcaster_port is None else args.broadcaster_port
    if eb_port < 0:
        eb_port = None
    if not math.isfinite(args.stim_clock_offset_ms) or abs(args.stim_clock_offset_ms) > 3.6e6:
        raise ConfigError(f"--stim-clock-offset-ms must be finite and within an hour, got {args.stim_clock_offset_ms}")
    probe = Probe(args.probe_channels, args.units, seed=args.seed)
    per_trial = 300
    n_train, n_oracle = args.train_trials, 4
    if args.seconds is not None:
        need = max(1, math.ceil(args.seconds * FPS / per_trial))
        n_oracle = max(n_oracle, need) if args.tier == "oracle" else n_oracle
        n_train = max(n_train, need) if args.tier == "train" else n_train
    rig = VirtualRig(probe.N, args.seed, n_train, n_oracle, per_trial, rig=args.rig)
    trials = rig.trials(args.tier)
    session = make_session(probe, rig, trials, None if args.seconds is None else int(round(args.seconds * FPS)))
    stim = None if args.stim == "same" else args.stim
    try:
        streamer = ProbeStreamer(probe, session, data_port=args.data_port, broadcaster_port=eb_port,
                                 stim_endpoint=stim, speed=args.speed, block_size=args.block_size,
                                 wait_subscriber_s=args.wait, stim_clock_offset_s=args.stim_clock_offset_ms / 1e3)
    except zmq.ZMQError as exc:
        raise ConfigError(f"cannot bind the virtual probe's ports ({args.data_port}, {args.data_port + 1}, "
                          f"{eb_port}): {exc} (another rig or program on the port?)") from None
    print(f"virtual ephys rig: {probe.C}-channel probe, {probe.N} units, {len(session.frames) / FPS:g} s of "
          f"{len(trials)} {args.tier} movie(s); ZMQ Interface on tcp://127.0.0.1:{streamer.data_port} (heartbeat +1)"
          + (f", Event Broadcaster on {streamer.broadcaster_port}" if streamer.broadcaster_port else "")
          + (f", stimulus on {streamer.stim_endpoint}" if stim else "")
          + f"; waiting up to {args.wait:g} s for a subscriber", flush=True)
    streamer.start(replay=False)
    try:
        stats = streamer.run()
    finally:
        streamer.close()
    print(f"virtual ephys rig: sent {stats['blocks']} blocks, {stats['spike']} spikes, {stats['stim']} stimulus "
          f"frames in {stats['wall_s']:.1f} s (voltage generated at {stats['generate_x_real_time']:.1f}x real time)",
          flush=True)
    return 0


def cmd_rig(args, progress) -> int:
    from rtdecode.errors import ConfigError

    if args.neurons < 1 or args.train_trials < 2:
        raise ConfigError("--neurons must be >= 1 and --train-trials >= 2")
    if args.seconds is not None and not args.seconds > 0:
        raise ConfigError(f"--seconds must be > 0, got {args.seconds}")
    if args.ephys:
        if args.openephys or args.write_rois or args.model:
            raise ConfigError("--ephys streams the virtual probe: --openephys, --write-rois and --model are for "
                              "other rigs")
        return _run_probe(args)
    if args.openephys:
        if args.write_rois:
            raise ConfigError("--openephys replays a recording: --write-rois is for the two-photon rig")
        return _run_openephys(args)
    if args.model and not args.write_rois:
        raise ConfigError("--model needs --write-rois DIR (the decoder is fitted on those ROIs' activity)")
    if args.prepare_only and not args.write_rois:
        raise ConfigError("--prepare-only needs --write-rois DIR (and optionally --model DIR)")
    if args.write_rois:
        from rtdecode.rig.prepare import write_rig_files

        r = write_rig_files(args.write_rois, args.model, args.neurons, args.seed, args.train_trials,
                            tuple(args.shape), progress=True, force=args.force, rig=args.rig)
        print(f"{'wrote' if r['written'] else 'kept (up to date)'} ROIs in {r['rois']}"
              + (f" and the model in {r['model']}" if r["model"] else ""), flush=True)
        if args.prepare_only:
            return 0

    from rtdecode.rig import VirtualRig
    from rtdecode.rig.sender import SenderConfig, run_sender
    from rtdecode.stimuli.movies import FPS

    n_train, n_oracle = args.train_trials, 4
    per_trial = 300
    if args.seconds is not None:
        need = max(1, math.ceil(args.seconds * FPS / per_trial))
        n_oracle = max(n_oracle, need) if args.tier == "oracle" else n_oracle
        n_train = max(n_train, need) if args.tier == "train" else n_train
    rig = VirtualRig(args.neurons, args.seed, n_train, n_oracle, per_trial, rig=args.rig)
    trials = tuple(rig.trials(args.tier))
    cfg = SenderConfig(n_neurons=args.neurons, seed=args.seed, n_train=n_train, n_oracle=n_oracle, trials=trials, rig=args.rig,
                       speed=args.speed, frame_shape=tuple(args.shape), endpoint=args.frames,
                       stim_endpoint=None if args.stim == "same" else args.stim, wait_subscriber_s=args.wait,
                       max_frames=None if args.seconds is None else int(round(args.seconds * FPS)))
    print(f"virtual rig: frames on {args.frames}, stimulus on {args.frames if args.stim == 'same' else args.stim}; "
          f"waiting up to {args.wait:g} s for a subscriber", flush=True)
    try:
        r = run_sender(cfg)
    except TimeoutError as exc:
        raise ConfigError(f"{exc}; start `rtdecode run` (or `rtdecode probe`) against it, or raise --wait") from None
    except Exception as exc:  # a bind failure names the address
        import zmq

        if isinstance(exc, zmq.ZMQError):
            raise ConfigError(f"cannot bind {args.frames} / {args.stim}: {exc} (another rig or program on the "
                              "port?)") from None
        raise
    print(f"virtual rig: sent {r['frames']} frames of {len(trials)} {args.tier} movie(s)", flush=True)
    return 0
