"""The `rtdecode` command line (docs/design.md 3.1): `main` and one function per sub-command. The parser
is `rtdecode.cli_parser`; heavy imports happen inside each sub-command."""

from __future__ import annotations

import json
import logging
import sys

from rtdecode.cli_parser import build_parser
from rtdecode.decode import methods  # the registries: light, no torch or runtimes
from rtdecode.errors import RtdecodeError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    progress = sys.stderr.isatty() or args.verbose > 0
    try:
        return COMMANDS[args.command](args, progress)
    except RtdecodeError as exc:
        print(f"rtdecode {args.command}: error: {exc}", file=sys.stderr)
        return 1


def cmd_demo(args, progress) -> int:
    from rtdecode.live.demo import run_demo

    summary = run_demo(args.out, seconds=args.seconds, headless=args.headless, n_neurons=args.neurons,
                       n_train=args.train_trials, seed=args.seed, speed=args.speed, progress=True,
                       screenshot=args.screenshot, rig=args.rig)
    lat = summary["latency_ms"]
    print(f"pixel_corr {summary['pixel_corr']:.3f}  latency p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
          f"frames {summary['frames']}  dropped {summary['dropped']}  ({args.out}/summary.json)")
    return 0


def cmd_simulate(args, progress) -> int:
    from pathlib import Path

    from rtdecode.rig import VirtualRig

    rig = VirtualRig(args.neurons, args.seed, args.train_trials, args.test_trials, args.trial_frames, rig=args.rig)
    root = rig.write_dataset(args.out, progress=True, modality=args.modality)
    if args.two_photon_trials or args.ephys:
        from rtdecode.rig import output

        output.write_extras(rig, Path(args.out), args.two_photon_trials, args.ephys, progress=True)
    print(f"wrote {len(rig.schedule)} trials of {args.neurons} neurons to {root}")
    return 0


def cmd_export(args, progress) -> int:
    if args.out is None and args.nwb is None:
        raise RtdecodeError("give --out DIR (Sensorium 2023 layout) or --nwb OUT.nwb, or both")
    if args.out is not None:
        from rtdecode.offline.session_export import export_sensorium

        print(f"wrote {export_sensorium(args.session, args.out, args.tier, rois=args.rois, progress=progress)}")
    if args.nwb is not None:
        try:
            from rtdecode.offline.nwb_export import export_nwb

            import pynwb  # noqa: F401
        except ImportError as exc:
            raise RtdecodeError(f"--nwb needs pynwb ({exc}); install the extra: pip install -e '.[nwb]'") from None
        from rtdecode.live.config import resolve_session_metadata
        from rtdecode.offline.nwb_export import SUBJECT_OPTIONS

        metadata = resolve_session_metadata(args.session, {
            "subject": {k: getattr(args, k) for k in SUBJECT_OPTIONS},
            "imaging_plane": {"location": args.location, "indicator": args.indicator},
            "experimenter": args.experimenter, "institution": args.institution, "lab": args.lab,
            "experiment_description": args.experiment_description})
        rep = export_nwb(args.session, args.nwb, rois=args.rois, compress=not args.no_compress, progress=True,
                         metadata=metadata, allow_damaged=args.allow_damaged)
        print(f"wrote {rep['path']}: {rep['frames']} frames ({rep['kind']})")
        for what in rep["damaged"]:
            print(f"  damaged, left out (--allow-damaged): {what}")
        for what in rep["missing"]:
            print(f"  not in the file: {what}")
        for what in rep["notes"]:
            print(f"  note: {what}")
        if rep["dandi_missing"]:
            print(f"  not ready for DANDI, missing: {', '.join(rep['dandi_missing'])}; add them to the rig file's "
                  "session_metadata (docs/rig-file.md) or give them as export options (--subject-id, --species, "
                  "--sex, --age, --experimenter, ...)")
    return 0


def cmd_dataset(args, progress) -> int:
    from rtdecode.offline.tiff_dataset import tiff_dataset

    r = tiff_dataset(args.tiff, args.stimulus_log, args.movies, args.rois, args.out, channel=args.channel,
                     planes=args.planes, scan_rois=args.scan_rois, fps=args.fps, crop=None if args.crop is None else tuple(args.crop), tier=args.tier, progress=progress)
    print(f"wrote {r['root']}: {r['trials']} trials, {r['paired']} of {r['volumes']} frames paired with a stimulus "
          f"frame, {r['neurons']} neurons; ignored {r['ignored']}")
    return 0


def cmd_fit(args, progress) -> int:
    from rtdecode.decode import distributed as dist

    if args.nproc > 1 and not dist.launched():  # start torchrun, which runs this command N times
        return dist.launch(args.nproc, _without_nproc(args.argv))
    with dist.session(device=args.device) as env:
        return _fit(args, env)


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _fit(args, env) -> int:
    from pathlib import Path

    from rtdecode.offline.fit import fit_dataset

    if (Path(args.dataset) / "session.json").is_file():  # a recorded calibration block
        import tempfile

        from rtdecode.offline.session_export import export_sensorium

        tmp = tempfile.TemporaryDirectory(prefix="rtdecode-session-")
        args.dataset = str(export_sensorium(args.dataset, Path(tmp.name) / "dataset", rois=args.rois, progress=True))
    elif args.rois is not None:
        from rtdecode.errors import ConfigError

        raise ConfigError(f"--rois re-extracts a recorded session's raw frames; {args.dataset} is not a session "
                          "folder (session.json)")

    opts = {}
    if methods.METHODS[args.method].encoder:
        from rtdecode.decode.inverse import InverseConfig

        for k in ("encoder_steps", "encoder_models", "inverse_trials", "synth_movies"):
            if getattr(args, k) is not None:
                opts[k] = getattr(args, k)
        if args.amortized_steps:
            opts["amortized_steps"] = tuple(args.amortized_steps)
        if args.amortized_kind:
            opts["amortized_cfg"] = methods.amortized_config(args.amortized_kind)
        inv = {k: v for k, v in (("iterations", args.inverse_iterations), ("stride", args.inverse_stride)) if v}
        if inv:
            opts["inverse_cfg"] = InverseConfig(**inv)
    if args.compress is not None:
        from rtdecode.errors import ConfigError

        if not all(c >= 0 and c < float("inf") for c in args.compress):
            raise ConfigError(f"--compress must be finite numbers >= 0 (0: off), got {args.compress}")
        opts["compress"] = args.compress[0] if len(args.compress) == 1 else tuple(args.compress)
    if args.keep_brightness:
        opts["brightness_keep"] = (1.0,)
    card = fit_dataset(args.dataset, args.out, args.method, args.neurons_subset, bins=args.window,
                       lag_min=args.lag_min, progress=True, checkpoint_every=args.checkpoint_every,
                       resume=args.resume, **opts)
    if env.is_main:
        print(f"wrote {args.out} ({card.method}, {card.neurons} neurons, window {card.window.bins} bins"
              + (f", {env.world_size} processes, {env.backend})" if env.distributed else ")"))
    return 0


def cmd_reconstruct(args, progress) -> int:
    from rtdecode.offline.reconstruct import reconstruct

    m = reconstruct(args.model, args.dataset, args.out, args.method, tuple(args.tiers), progress=True,
                    iterations=args.iterations, uncertainty=args.uncertainty)
    print(json.dumps({k: m[k] for k in ("pixel_corr", "frame_corr", "pixel_corr_full", "trials", "uncertainty")
                      if k in m}))
    return 0


def cmd_view(args, progress) -> int:
    from rtdecode.outputs.view import run_viewer

    run_viewer(args.address, args.seconds, args.screenshot, args.rois, args.mask)
    return 0


def cmd_probe(args, progress) -> int:
    from rtdecode.sources.probe import cmd_probe as run

    return run(args, progress)


def cmd_rig(args, progress) -> int:
    from rtdecode.rig.command import cmd_rig as run

    return run(args, progress)


def cmd_run(args, progress) -> int:
    from rtdecode.live.run import run_session

    st = run_session(args.config, args.record, args.seconds)
    lat = st["latency_ms"]
    ignored = sum(st.get("ignored_frames", {}).values())
    if st["backend"] is None:
        raw = st.get("raw_frames_recorded")
        print(f"calibration block (no decoder): {st['frames']} frames "
              f"{'extracted and recorded' if raw is None else 'recorded'}"
              + (f" ({raw} raw frames kept)" if raw is not None else "")
              + f", dropped {st['dropped']}, rejected {st['rejected'] + st['rejected_frames']}, ignored {ignored} "
              "(other channels / planes / frame shape)")
    else:
        print(f"backend {st['backend']}: {st['frames']} frames, {st['published']} decoded, latency p50 {lat['p50']} ms "
              f"p99 {lat['p99']} ms, dropped {st['dropped']}, rejected {st['rejected'] + st['rejected_frames']}, "
              f"ignored {ignored}")
    print("stage latency (ms): " + ", ".join(f"{name} p50 {s['p50']} p99 {s['p99']}"
                                             for name, s in st["stages_ms"].items()))
    acq = st.get("acquired_to_published_ms") or {}
    if acq.get("p50") is not None:
        print(f"acquired -> published (ms): p50 {acq['p50']} p99 {acq['p99']} (from the sender's acquisition clock)")
    q = st.get("live_quality")
    if q and q.get("trials"):
        per = ", ".join(f"{k}: {v}" for k, v in q["per_trial"].items())
        where = q["mask"] if isinstance(q["mask"], str) else f"{q['mask']} pixels of the evaluation mask"
        print(f"live pixel_corr {q['pixel_corr']:.3f} ({where}; {q['trials']} stimulus trials: {per})")
    unc = st.get("uncertainty")
    if unc:
        cal = unc["calibration"]
        corr = cal.get("corr_spread_abs_error")
        print(f"uncertainty: {unc['published']} frames ({unc['folds']} fold ridges), p50 {unc['ms']['p50']} ms "
              f"p99 {unc['ms']['p99']} ms after each decoded frame; spread vs |error| Pearson "
              + (f"{corr:.3f} over {cal['frames']} frames" if corr is not None else "not measured (no stimulus images)"))
    ref = st.get("refined")
    if ref:
        q, rl = ref["quality"], ref["acquired_to_published_ms"]
        print(f"refined: {ref['published']} of {ref['offered']} decoded frames ({ref['skipped']} skipped, "
              f"{ref['not_ready']} before it was ready), acquired -> published p50 {rl['p50']} ms p99 {rl['p99']} ms; "
              f"pixel_corr refined {q['pixel_corr_refined']} vs decoded {q['pixel_corr_decoded']} on the same frames"
              + (f"; off: {ref['disabled']}" if ref["disabled"] else ""))
    if st.get("records_lost") or st.get("record_damaged"):
        print(f"recording damaged: {st.get('records_lost', 0)} of {st['frames']} records lost "
              f"({st.get('record_damaged')}); see rtdecode inspect {args.record or ''}".rstrip())
    return 0


def cmd_inspect(args, progress) -> int:
    from rtdecode.outputs.session_reader import read_session, summarize

    s = summarize(read_session(args.session))
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        stop = ("stopped cleanly" if s["clean_stop"] else "ended by an error" if s["ended_by"] == "error"
                else "did not stop cleanly (killed?)")
        print(f"{args.session}: {s['frames']} frames over {s['duration_s']:.1f} s, {s['neurons']} neurons, "
              f"{s['triggers']} triggers ({s['suppressed_triggers']} suppressed), {s['gaps']} missing frames "
              f"(sequence gaps), {len(s['missing_chunks'])} missing chunks, {stop}")
        if "uncertainty_frames" in s:
            cal = s.get("uncertainty_calibration") or {}
            corr = cal.get("corr_spread_abs_error")
            mean = s["uncertainty_mean_spread"]
            print(f"  uncertainty: {s['uncertainty_frames']} frames, mean spread "
                  + ("-" if mean is None else f"{mean:.2f}") + " (0-255 scale); live spread vs |error| Pearson "
                  + (f"{corr:.3f} over {cal.get('frames')} frames" if corr is not None else "not measured"))
        if "refined_frames" in s:
            q = s.get("refined_quality") or {}
            print(f"  refined: {s['refined_frames']} frames; live pixel_corr refined {q.get('pixel_corr_refined')} "
                  f"vs decoded {q.get('pixel_corr_decoded')} on the same frames")
        for problem in s["damaged"]:
            print(f"  damaged: {problem}")
    # a session without its end (killed, or still recording) is not a finished one: non-zero too
    return 0 if s["ok"] and s["clean_stop"] else 1


def cmd_extract(args, progress) -> int:
    from rtdecode.extract.offline import cmd_extract as run

    return run(args)


def cmd_rois(args, progress) -> int:
    from pathlib import Path

    from rtdecode.offline.detect_rois import detect_planes

    fps, tau = args.fps, args.tau
    for m in args.movie:  # a recorded session: its rig file's rate and indicator
        tp = _session_two_photon(Path(m))
        if tp:
            fps = fps or tp.get("fps")
            tau = tau or tp.get("tau_s")
    results = detect_planes(args.movie, args.out, channel=args.channel, planes=args.planes, progress=True,
                            fps=fps or 30.0, tau_s=tau or 0.7, diameter=args.diameter, threshold=args.threshold,
                            nonrigid=not args.rigid)
    for r in results:
        print(f"wrote {r['out']}: {r['cells']} cells (p >= {r['threshold']:g}) of {r['rois_found']} ROIs found in "
              f"{r['frames']} frames, {r['seconds']:.0f} s")
    return 0


def _session_two_photon(folder) -> dict | None:
    """The two_photon section of a session's recorded rig file, or None."""
    path = folder / "session.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    tp = ((meta.get("config") or {}).get("extraction") or {}).get("two_photon")
    return tp if isinstance(tp, dict) else None


def cmd_bench(args, progress) -> int:
    import importlib

    return importlib.import_module(f"rtdecode.bench.{args.bench}").main(args.args, progress=progress)


def cmd_compile(args, progress) -> int:
    from rtdecode.decode.backends.compile import cmd_compile as run

    return run(args, progress)


COMMANDS = {"demo": cmd_demo, "simulate": cmd_simulate, "fit": cmd_fit, "reconstruct": cmd_reconstruct,
            "view": cmd_view, "extract": cmd_extract, "bench": cmd_bench,
            "inspect": cmd_inspect, "probe": cmd_probe,
            "compile": cmd_compile, "run": cmd_run, "export": cmd_export, "dataset": cmd_dataset, "rig": cmd_rig,
            "rois": cmd_rois}
