"""The `rtdecode` command line's parser (docs/design.md 3.1): every sub-command, its options and help.
Light imports only (the registries); `rtdecode.cli` runs the commands."""

from __future__ import annotations

import argparse
import textwrap

from rtdecode.bench import BENCHES, positive_float, positive_int
from rtdecode.decode import methods  # the registries: light, no torch or runtimes
from rtdecode.decode.backends import BACKENDS, DEFAULT_PREFERENCE
from rtdecode.sources.probe import add_probe_parser  # light: zmq and json only

EPILOG = """examples:
  rtdecode demo --headless --out demo_out        the virtual rig, end to end, in 2-3 minutes
  rtdecode simulate --out mouse --neurons 1000   a dataset in the Sensorium 2023 layout
  rtdecode fit mouse --out model --method ridge  fit a decoder on the 'train' trials
  rtdecode reconstruct model mouse --out rec     decode the 'oracle' trials, write metrics.json
  rtdecode view tcp://127.0.0.1:5560             watch a decoded stream
  rtdecode probe 5556 --protocol openephys       what an Open Ephys GUI (or the emulator) sends
  rtdecode rig --write-rois data/virtual/rois --model models/virtual   the virtual rig, as its own process
  rtdecode rois sessions/calibration --out rois  find the cells of a new field of view (suite2p)
"""


def build_parser() -> argparse.ArgumentParser:
    from rtdecode.rig.population import PROFILES  # `rtdecode rig`'s parser imports it too
    from rtdecode.rig import MODALITIES

    p = argparse.ArgumentParser(prog="rtdecode", description="Real-time reconstruction of what a mouse sees, "
                                "from its visual cortex, during the experiment.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="the whole live path on the virtual rig over loopback ZeroMQ",
                       description="A virtual rig streams two-photon frames over ZeroMQ; rtdecode fits a decoder "
                       "on its calibration block, then decodes held-out movies live. With --headless it writes "
                       "OUT/summary.json (pixel_corr, latency_ms p50/p99, frames, dropped) and a PNG of stimulus "
                       "and reconstruction side by side.")
    d.add_argument("--headless", action="store_true", help="no window; write summary.json and a PNG")
    d.add_argument("--seconds", type=positive_float, default=40.0, help="length of the live block (default 40)")
    d.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    d.add_argument("--neurons", type=positive_int, default=2000,
                   help="neurons / ROIs (default 2000; 1000 with --train-trials 30 takes half the time and scores "
                        "~0.1 less, benchmarks/results/demo_defaults.json)")
    d.add_argument("--train-trials", type=positive_int, default=60,
                   help="10-s movies in the calibration block (default 60: about three quarters of the demo's "
                        "3 min, benchmarks/results/demo_realistic.json)")
    d.add_argument("--speed", type=float, default=1.0, help="playback speed, 1 = real time 30 Hz (default 1)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--rig", default="realistic", choices=tuple(PROFILES),
                   help="the virtual mouse: realistic (default; as hard as real mouse V1, "
                        "python benchmarks/research/rig.py), realistic_v1 (its first calibration) or easy (the "
                        "original, nearly linear rig)")
    d.add_argument("--screenshot", default=None, metavar="PNG",
                   help="also run the viewer offscreen and save a PNG of it near the end")

    s = sub.add_parser("simulate", help="write a virtual-rig dataset in the Sensorium 2023 layout",
                       description="Writes OUT/data/{videos,responses,behavior,pupil_center}/{trial}.npy and "
                       "OUT/meta/... exactly as the Sensorium 2023 data, from a seeded ground-truth V1 population "
                       "(responses: deconvolved-calcium-like, or spike counts with --modality spikes).")
    s.add_argument("--out", required=True, help="dataset folder to create")
    s.add_argument("--neurons", type=positive_int, default=1000)
    s.add_argument("--train-trials", type=positive_int, default=20)
    s.add_argument("--test-trials", type=positive_int, default=4, help="held-out 'oracle' trials (default 4)")
    s.add_argument("--trial-frames", type=positive_int, default=300, help="frames per trial (default 300 = 10 s)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rig", default="realistic", choices=tuple(PROFILES),
                   help="realistic (default): calibrated to mouse V1 two-photon data (single-trial reliability "
                   "0.12, ~0.1 in real data; 90%% complex cells, behaviour gain, deconvolved-calcium responses "
                   "with 45%% zeros; ridge 0.43 / 0.50 / 0.55 at 1k / 2k / 4k neurons; "
                   "python benchmarks/research/rig.py reports it); realistic_v1: its first calibration (reliability "
                   "0.036); easy: the original nearly linear rig, spike counts")
    s.add_argument("--modality", default="calcium", choices=MODALITIES,
                   help="what the responses are: calcium (default: the rig's deconvolved-calcium-like "
                   "responses) or spikes (the same draw's spike counts per frame, as sorted units of an "
                   "ephys probe give; the v1_kit's --modality spikes)")
    s.add_argument("--two-photon-trials", type=int, default=0, metavar="K",
                   help="also render raw 512x512 uint16 two-photon frames of the first K trials to "
                   "OUT/twophoton/ (a TIFF per trial, suite2p ROIs, ground truth)")
    s.add_argument("--ephys", action="store_true", help="also write spike times per unit and channel "
                   "(Kilosort/phy layout) to OUT/ephys/")

    f = sub.add_parser("fit", help="fit a decoder on a dataset's 'train' trials",
                       description="Fits on the trials whose tier is 'train' (the last 20% of them choose the "
                       "ridge penalty) and writes a self-describing model directory: card.json + weights.npz.")
    f.add_argument("dataset", help="a mouse folder in the Sensorium 2023 layout, or a recorded session folder "
                   "(a calibration block: exported to the layout first, every trial as 'train')")
    f.add_argument("--out", required=True, help="model directory to write")
    f.add_argument("--rois", default=None, metavar="DIR",
                   help="a session recorded with raw frames (a new field of view): extract them with the ROIs of this "
                   "suite2p folder (from 'rtdecode rois') and the session's rig-file settings, and fit on that")
    f.add_argument("--method", default="ridge", choices=methods.fit_methods(),
                   help="; ".join(f"{m.name}: {m.help}" for m in methods.METHODS.values() if m.fit))
    f.add_argument("--encoder-steps", type=int, default=None,
                   help="encoder training steps (default 1000; with --method amortized, 0 trains no encoder: a faster "
                   "fit whose model cannot reconstruct --method warm|inverse)")
    f.add_argument("--encoder-models", type=positive_int, default=None, help="encoder ensemble size (default 1)")
    f.add_argument("--inverse-iterations", type=positive_int, default=None,
                   help="iterations of the inverse on the calibration trials (default 20)")
    f.add_argument("--inverse-stride", type=positive_int, default=None,
                   help="frames between the inverse's 32-frame windows (default 8, as Bauer et al.; 16 halves its cost)")
    f.add_argument("--inverse-trials", type=int, default=None,
                   help="calibration trials inverted as warm-start training targets (default 0: measured no gain)")
    f.add_argument("--synth-movies", type=int, default=None,
                   help="extra movies turned into training pairs by the encoder (default 0; needs the encoder). The image "
                   "prior: K procedural movies (dead leaves under eye movements, no photographs) pre-train its U-Net "
                   "before the calibration pairs (docs/decoders.md)")
    f.add_argument("--amortized-steps", type=int, nargs=2, default=None, metavar=("WARM", "FINETUNE"),
                   help="amortized training steps on the inverse's reconstructions (used only with "
                   "--inverse-trials), then on true frames (default 0 1500)")
    f.add_argument("--amortized-kind", default=None, choices=tuple(methods.AMORTIZED_KINDS),
                   help="the network --method amortized trains: image_prior (default: a U-Net over a clip of linear "
                   "frames, learned from cross-fitted calibration pairs; docs/decoders.md) or ridge_residual (the "
                   "earlier dense residual; needed for --inverse-trials, --nproc, checkpoints)")
    f.add_argument("--neurons-subset", type=positive_int, default=None, metavar="K", help="use the first K neurons")
    f.add_argument("--window", type=positive_int, default=None,
                   help="activity bins per decoded frame (default 8; ridge without --window and --lag-min chooses "
                   "its window on the validation trials: bins f .. f+7 or f-4 .. f+7 for frame f)")
    f.add_argument("--lag-min", type=int, default=None,
                   help="first bin of the window relative to the frame (default 0; see --window for ridge)")
    f.add_argument("--compress", type=float, nargs="+", default=None, metavar="S",
                   help="activity compression for ridge and the amortized decoder's ridge path: log1p(x / (S x the "
                   "mean training activity)) before the z-score, which tames deconvolved calcium's large events; "
                   "0 turns it off; several values: the one scoring best on the validation trials (with its "
                   "penalty) is kept, e.g. --compress 6 0 (default 6)")
    f.add_argument("--keep-brightness", action="store_true",
                   help="ridge (and the amortized decoder's ridge path) keeps all of each decoded frame's mean "
                   "brightness; by default the share kept (0, 0.25, 0.5, 0.75 or 1) is chosen with the penalty on the "
                   "validation trials on calcium, because ridge's brightness was its least reliable part on the "
                   "realistic rig (benchmarks/results/ridge_brightness.json); on spike counts (responses all "
                   "non-negative whole numbers) all of it is kept, the share gained on neither simulator there "
                   "(docs/decoders.md)")
    f.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="train inverse / amortized in N processes on this machine (torchrun: DDP, gloo on CPUs, "
                   "NCCL on GPUs); across machines start 'torchrun ... -m rtdecode fit ...' yourself")
    # the names of rtdecode.decode.distributed.DEVICES, written out: that module imports torch
    f.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where a single-process fit trains the encoder and the amortized network: auto (default) "
                   "takes the GPU when torch sees one, else the CPU; ridge is solved on the CPU either way")
    f.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                   help="checkpoint each training loop every K steps (0: at the end of each stage) in "
                   "OUT/checkpoints")
    f.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoints (same seed and steps: the uninterrupted result)")

    r = sub.add_parser("reconstruct", help="decode held-out trials and score them",
                       description="Writes OUT/videos/{trial}.npy (same shape as the dataset's videos) and "
                       "OUT/metrics.json: pixel_corr (mask pixels x frames, first 30 frames dropped, mean over "
                       "trials), the mean per-frame correlation and the full-frame value.")
    r.add_argument("model")
    r.add_argument("dataset")
    r.add_argument("--out", required=True)
    r.add_argument("--method", default=None, choices=methods.reconstruct_modes(),
                   help="default: the model's own; inverse and warm need an encoder-based model")
    r.add_argument("--iterations", type=positive_int, default=None, help="inverse / warm-refinement iterations")
    r.add_argument("--tiers", nargs="+", default=["oracle"], help="tiers to reconstruct (default oracle)")
    r.add_argument("--uncertainty", action="store_true",
                   help="also write OUT/uncertainty/{trial}.npy (per-pixel spread of the model's fold ensemble; "
                   "image-prior amortized models) and its calibration against the error in metrics.json")

    v = sub.add_parser("view", help="watch a decoded stream (pyqtgraph)",
                       description="Shows the reconstruction, the stimulus beside it (when a stimulus stream is "
                       "given), an activity raster, latency, dropped/rejected counters, a rolling pixel_corr and "
                       "trigger markers. It only subscribes: it can never slow the rig down.")
    v.add_argument("address", nargs="+", help="publishers: rtdecode's (e.g. tcp://127.0.0.1:5560) and optionally "
                   "the stimulus stream's")
    v.add_argument("--seconds", type=positive_float, default=None, help="close after S seconds")
    v.add_argument("--screenshot", default=None, metavar="PNG", help="render offscreen, save a PNG at the end")
    v.add_argument("--rois", default=None, metavar="DIR",
                   help="suite2p folder: ring every ROI on the raw two-photon frame (give the acquisition address too)")
    v.add_argument("--mask", default=None, metavar="NPY",
                   help="evaluation region (bool image of the decoded frame's shape, e.g. a dataset's "
                        "meta/evaluation_mask.npy): drawn, and the rolling pixel_corr is computed inside it")
    rn = sub.add_parser("run", help="a live session on a rig, from a YAML rig file (configs/)",
                        description="Builds extraction -> activity ring -> decoder from the rig file, checks the "
                        "stage graph, warms every stage, then decodes every frame the source sends and publishes "
                        "it, until the source ends, --seconds pass or Ctrl-C. The decoder runs on the first of "
                        "decoder.backends that loads here.")
    rn.add_argument("config", help="rig file, e.g. configs/scanimage_2p.yaml")
    rn.add_argument("--record", default=None, metavar="PATH", help="record the session to this new folder (needed "
                    "when the rig file has no decoder: a calibration block for 'rtdecode fit PATH')")
    rn.add_argument("--seconds", type=positive_float, default=None, help="stop after S seconds")

    ex = sub.add_parser("export", help="write a recorded session as a Sensorium 2023 dataset (--out) or NWB (--nwb)",
                        description="--out: one trial per stimulus trial seen: responses are the recorded activity, "
                        "videos the stimulus images recorded with it; behaviour is not recorded (zeros). "
                        "--nwb: the whole session in Neurodata Without Borders (needs the 'nwb' extra): metadata, "
                        "ROIs and traces (two-photon) or binned activity (ephys), the stimulus, the decoded video, "
                        "every trigger and the counters (docs/nwb.md). The session is read through the checks of "
                        "'rtdecode inspect': a damaged session exits 1 naming what is damaged, unless "
                        "--allow-damaged (then what is whole is written and the missing ranges are listed in "
                        "invalid_times). The subject and session metadata come from the rig file's "
                        "session_metadata (recorded in session.json); the options below override it key by key.")
    ex.add_argument("session")
    ex.add_argument("--out", default=None, help="dataset folder to create (Sensorium 2023 layout)")
    ex.add_argument("--tier", default="train", help="--out: tier of every exported trial (default train)")
    ex.add_argument("--nwb", default=None, metavar="OUT.nwb", help="NWB file to write")
    ex.add_argument("--rois", default=None, metavar="DIR",
                    help="--nwb: suite2p folder of the ROIs, for sessions recorded without rois.npz; --out: extract "
                    "the session's raw frames with these ROIs (a new field of view's calibration block)")
    ex.add_argument("--no-compress", action="store_true", help="--nwb: do not gzip the large datasets")
    ex.add_argument("--allow-damaged", action="store_true",
                    help="--nwb: export a damaged session's whole chunks (exit 0), the damaged ranges in invalid_times")
    ex.add_argument("--subject-id", default=None, help="--nwb: the animal's id (no '/')")
    ex.add_argument("--species", default=None, help="--nwb: Latin binomial, e.g. 'Mus musculus'")
    ex.add_argument("--sex", default=None, help="--nwb: M, F, U (unknown) or O (other)")
    ex.add_argument("--age", default=None, help="--nwb: ISO 8601 duration at the session, e.g. P90D, or P60D/P90D")
    ex.add_argument("--date-of-birth", default=None, metavar="YYYY-MM-DD", help="--nwb: instead of (or with) --age")
    ex.add_argument("--strain", default=None, help="--nwb: e.g. C57BL/6J")
    ex.add_argument("--experimenter", default=None, action="append",
                    help="--nwb: 'Last, First' (repeat for several)")
    ex.add_argument("--institution", default=None)
    ex.add_argument("--lab", default=None)
    ex.add_argument("--experiment-description", default=None)
    ex.add_argument("--location", default=None, help="--nwb: the imaged brain area (Allen CCF, e.g. VISp)")
    ex.add_argument("--indicator", default=None, help="--nwb: the calcium indicator, e.g. GCaMP6s")

    ds = sub.add_parser("dataset", help="a ScanImage TIFF + a stimulus log -> a fit dataset (Sensorium 2023 layout)",
                        description="Runs the live extraction chain over a ScanImage TIFF recording (channels, planes "
                        "and frame numbers from its own metadata) and pairs each frame with the stimulus frame the "
                        "log puts on screen. Stimulus log: CSV with the header 'frame,trial,stim_frame' (ScanImage "
                        "frame number from 1; the movie MOVIES/{trial}.npy, (T, H, W) 0-255; its frame index from "
                        "0), or a (K, 3) integer .npy. Then: rtdecode fit OUT --out MODEL.")
    ds.add_argument("tiff", help="a ScanImage TIFF, or a folder of them (read in name order)")
    ds.add_argument("--stimulus-log", required=True, metavar="CSV|NPY", help="frame,trial,stim_frame rows")
    ds.add_argument("--movies", required=True, metavar="DIR", help="folder of {trial}.npy movies, (T, H, W), 0-255")
    ds.add_argument("--rois", required=True, nargs="+", metavar="DIR",
                    help="suite2p folder (stat.npy, iscell.npy, ops.npy with meanImg); one per plane of --planes, "
                    "or with --scan-rois one per (plane, scan ROI), plane-major: p1 r1, p1 r2, ..., p2 r1, ...")
    ds.add_argument("--out", required=True, help="dataset folder to create")
    ds.add_argument("--channel", type=positive_int, default=1, help="imaging channel to extract (default 1)")
    ds.add_argument("--planes", type=positive_int, nargs="+", default=[1], help="planes to extract (default 1)")
    ds.add_argument("--scan-rois", type=positive_int, nargs="+", default=[1], metavar="ROI",
                    help="multi-ROI (mesoscope) scans: the scanned ROIs to extract, from 1 in the file's ROI group "
                    "(default 1); the activity vector is plane-major, then scan ROI, then cell")
    ds.add_argument("--fps", type=positive_float, default=30.0, help="frame (volume) rate, Hz (default 30)")
    ds.add_argument("--crop", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                    help="registration crop, as extraction.two_photon.crop (default 320 320, binned 2x2)")
    ds.add_argument("--tier", default="train", help="tier of every trial (default train)")

    i = sub.add_parser("inspect", help="what a recorded session holds; non-zero exit if damaged or not stopped cleanly",
                       description="Prints a session's duration, frames, triggers and sequence gaps, and whether "
                       "it stopped cleanly. Exits 1 if any chunk or trigger record is damaged, or the session did not stop "
                       "cleanly (no end.json: killed or still recording; or ended by an error).")
    i.add_argument("session", help="a session folder written by 'rtdecode demo' or 'rtdecode run --record'")
    i.add_argument("--json", action="store_true", help="print JSON")


    add_probe_parser(sub)

    from rtdecode.rig.command import add_rig_parser  # light: argparse only

    add_rig_parser(sub)

    ro = sub.add_parser("rois", help="find the cells of a new field of view (suite2p) in a calibration recording",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description=textwrap.fill("Runs suite2p's own registration, functional cell detection and cell classifier "
                        "(the 'rois' extra: pip install -e '.[rois]') on one plane of a calibration recording, and "
                        "writes the suite2p folder that the rig file's extraction.two_photon.rois reads: stat.npy, "
                        "iscell.npy (column 0: a cell, from --threshold; column 1: the classifier's probability), "
                        "ops.npy (meanImg: the live registration reference) and rois.json (what ran). No second "
                        "acquisition: record the calibration block with outputs.raw_frames in the rig file, or give "
                        "ScanImage's own TIFFs.", 100),
                        epilog="""examples:
  rtdecode rois sessions/calibration --out rois          a block recorded with outputs.raw_frames
  rtdecode rois file_00001.tif file_00002.tif --out rois --channel 1
  rtdecode rois tiffs/ --planes 1 2 --out rois           one folder per plane: rois/plane0, rois/plane1
then: rtdecode fit sessions/calibration --rois rois --out model   (extracts the block with these ROIs)
      extraction.two_photon.rois: rois  in the live rig file (docs/rois.md)""")
    ro.add_argument("movie", nargs="+", help="ScanImage TIFFs or folders of them (read in name order, channel and "
                    "plane from their metadata), .npy (T, H, W) arrays, or session folders recorded with raw frames; "
                    "several inputs are one movie, in the order given")
    ro.add_argument("--out", required=True, help="folder to write (one plane), or one folder per plane in it: "
                    "plane0, plane1, ... in --planes order")
    ro.add_argument("--channel", type=positive_int, default=1, help="TIFFs: the functional channel (default 1)")
    ro.add_argument("--planes", type=positive_int, nargs="+", default=[1], help="TIFFs: the planes (default 1)")
    ro.add_argument("--threshold", type=float, default=0.5, metavar="P",
                    help="classifier probability (0-1) from which an ROI is a cell and is extracted live (default 0.5, "
                    "as suite2p); every ROI and its probability stay in stat.npy / iscell.npy")
    ro.add_argument("--fps", type=positive_float, default=None,
                    help="frame (volume) rate, Hz (default: the session's rig file, else 30)")
    ro.add_argument("--tau", type=positive_float, default=None,
                    help="indicator decay time, s (default: the session's rig file, else 0.7: GCaMP6s)")
    ro.add_argument("--diameter", type=positive_float, default=None, metavar="PX",
                    help="expected cell diameter, px (default: suite2p's, 12)")
    ro.add_argument("--rigid", action="store_true",
                    help="rigid registration only (faster; suite2p's default adds non-rigid blocks)")

    x = sub.add_parser("extract", help="run the live extraction chain offline over a two-photon movie",
                       description="Runs the exact live chain (registration, ROI + neuropil traces, dF/F, "
                       "deconvolution) over a movie and writes F.npy, Fneu.npy, dff.npy, activity.npy "
                       "(neurons x frames, float32) and shifts.npy (frames x 2) to OUT.")
    x.add_argument("movie", help="TIFF, .npy (T, H, W) or a folder of TIFFs (e.g. the rig's twophoton/)")
    x.add_argument("--rois", required=True, help="suite2p plane folder (stat.npy, iscell.npy, ops.npy)")
    x.add_argument("--out", required=True, help="output folder")
    x.add_argument("--fps", type=positive_float, default=30.0, help="frame rate, Hz (default 30)")
    x.add_argument("--r", type=float, default=0.7, help="neuropil coefficient (default 0.7)")
    x.add_argument("--tau", type=positive_float, default=0.7, help="indicator decay time, s (default 0.7)")
    x.add_argument("--crop", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                   help="registration crop (default 320 320, binned 2x2; regions under 320 px at full resolution)")
    x.add_argument("--backend", choices=("fast", "numpy"), default="fast",
                   help="fast: Numba/SciPy kernels (default); numpy: the reference implementation")

    c = sub.add_parser("compile", help="export the decoder to ONNX, build and warm the fastest backend here",
                       description="Exports MODEL/decoder.onnx if missing (opset 17, static batch 1, checked against "
                       "torch) and records it in card.json; loads the first backend of --backend that runs here, "
                       "warms it, prints what runs and why the others were skipped.")
    c.add_argument("model", help="model directory (card.json + weights.npz)")
    c.add_argument("--backend", action="extend", nargs="+", default=None, metavar="NAME",
                   help=f"preference order among {', '.join(BACKENDS)} (default: {' '.join(DEFAULT_PREFERENCE)})")
    c.add_argument("--threads", type=positive_int, default=1, help="CPU intra-op threads (default 1)")
    c.add_argument("--force-export", action="store_true", help="re-export decoder.onnx even if up to date")
    c.add_argument("--fp16", action="store_true",
                   help="TensorRT 10: FP16 engine (TensorRT 11 follows the graph's types)")
    c.add_argument("--rebuild", action="store_true", help="TensorRT: rebuild the cached engine")

    b = sub.add_parser("bench", help="the benchmarks a user runs on a rig, each writing JSON (docs/design.md 3.5)",
                       description="Each benchmark takes its own options: rtdecode bench NAME --help. The research "
                       "benchmarks are scripts in the repository: python benchmarks/research/NAME.py --help.")
    bsub = b.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, text in BENCHES.items():
        # every argument goes to the benchmark's own parser (rtdecode.bench.NAME); a prefix char no
        # option uses keeps this parser from reading them (--help included)
        bp = bsub.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        bp.add_argument("args", nargs=argparse.REMAINDER)
    return p
