"""A recorded session in Neurodata Without Borders: `rtdecode export SESSION --nwb OUT.nwb`.

What goes where (NWB 2.x core types only; every time series is time first, (frames, ...), and shares
the acquisition timestamps, seconds from `session_start_time`, stored once in
`processing/misc/AcquisitionFrameNumber`; docs/nwb.md):

- file metadata: start time (the earlier of the recorder's start and the first frame), session id
  (the folder name), rtdecode version and commit (of the recording, and of the exporter), keywords;
  the subject, experimenter, institution, lab, experiment description (the rig file's
  `session_metadata` as recorded in session.json, overridden by export options; nothing invented:
  what is missing for DANDI is reported); scratch: `rtdecode_session` (session.json as recorded:
  rig file, model card, ...), `model_card`, `rig_config`, `session_end` (end.json: counters, dropped /
  rejected / lost, latency histograms; absent when the session was killed);
- two-photon (rtdecode.offline.nwb_ophys): Device, OpticalChannel, one ImagingPlane per plane
  (location and indicator from the metadata); processing/ophys: ImageSegmentation with, per plane,
  the PlaneSegmentation of the ROIs used live and NeuropilSegmentation (pixel masks from the
  session's rois.npz or rois_plane{p}.npz, or `--rois` suite2p folder), Fluorescence (Fluorescence =
  F, Neuropil = Fneu, Deconvolved = the activity decoded), DfOverF (DfOverF), one RoiResponseSeries
  per plane with several planes, MotionShifts (dy, dx), SummaryImages (the registration reference)
  -- each trace as recorded;
- ephys: processing/ecephys: BinnedActivity (counts per bin and input), ActivityInputs (each
  input's channel or unit label) and, for Open Ephys channels, the electrodes table;
- stimulus: StimulusShown ((trial, stimulus frame) on screen at each acquisition frame),
  StimulusImages (the images, when the stimulus stream carried them), the trials table;
- processing/misc (the schema's module for what is neither one modality nor behaviour): DecodedVideo
  (ImageSeries), DecodedTarget, Latency, AcquisitionFrameNumber;
- intervals/triggers: every recorded trigger (rule, score, times, frame, trial, output, status);
- invalid_times: the ranges a damaged or killed session does not hold, with the reason.

The session is read through the checked reader of `rtdecode inspect`: a damaged session is refused
(RecordError naming what is damaged) unless `allow_damaged`.
Large arrays are streamed one session chunk at a time (rtdecode.offline.session_chunks, wrapped in
hdmf's AbstractDataChunkIterator), so memory stays bounded by a chunk whatever the session's length.
pynwb is imported only in this writer and its two-photon part (rtdecode.offline.nwb_ophys).
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

import rtdecode
from rtdecode.errors import ConfigError, RecordError
from rtdecode.offline.nwb_ophys import add_ophys
from rtdecode.offline.session_chunks import SMALL, SessionChunks
from rtdecode.outputs.record import git_commit
from rtdecode.sources import protocols

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _chunk_iterator(chunks: SessionChunks, key: str, bar, columns: slice | None = None):
    """An hdmf AbstractDataChunkIterator over `key` of every chunk (time first: (frames, ...)), or over
    `columns` of its second axis: one DataChunk per session chunk."""
    from hdmf.data_utils import AbstractDataChunkIterator, DataChunk

    class ChunkIterator(AbstractDataChunkIterator):
        def __init__(self):
            row = tuple(chunks.specs[key][0])
            if columns is not None:
                row = (len(range(*columns.indices(row[0]))),) + row[1:]
            self._shape = (chunks.total,) + row
            self._dtype = chunks.specs[key][1]
            self._gen = self._chunks()

        def _chunks(self):
            start = 0
            for a in chunks.iter_key(key, columns):
                sel = (slice(start, start + len(a)),) + tuple(slice(0, d) for d in a.shape[1:])
                yield DataChunk(data=a, selection=sel)
                start += len(a)
                if bar is not None:
                    bar.update(1)

        def __iter__(self):
            return self

        def __next__(self):
            return next(self._gen)

        def recommended_chunk_shape(self):
            return (max(1, min(max(chunks.sizes), chunks.total)),) + self._shape[1:]

        def recommended_data_shape(self):
            return self._shape

        @property
        def dtype(self):
            return self._dtype

        @property
        def maxshape(self):
            return self._shape

    return ChunkIterator()


def _start_time(meta: dict, t: np.ndarray) -> datetime:
    """The earlier of the recorder's start and the first frame, floored to the microsecond (UTC)."""
    first = float(t.min()) if t.size else float(meta.get("started", 0.0))
    ref = min(float(meta.get("started", first)), first)
    return EPOCH + timedelta(microseconds=math.floor(ref * 1e6))


def _invalid_ranges(chunks: SessionChunks, ts: np.ndarray, meta: dict, end) -> list[tuple]:
    """[(start, stop, reason)] in file seconds: damaged or missing chunks, frames lost upstream, the
    unwritten tail of a killed session."""
    out = []
    bounds, start = {}, 0  # chunk index -> (first, last) row
    for k, n in zip(chunks.index, chunks.sizes):
        bounds[k] = (start, start + n - 1)
        start += n
    lost = sorted([(k, why) for k, why in chunks.damaged] + [(k, "missing from chunks/") for k in chunks.missing])
    for k, why in lost:
        before = [b[1] for j, b in bounds.items() if j < k]
        after = [b[0] for j, b in bounds.items() if j > k]
        t0 = float(ts[max(before)]) if before else 0.0
        t1 = float(ts[min(after)]) if after else t0 + float(meta.get("chunk_s", 1.0))
        out.append((t0, t1, f"chunk {k:06d} {why}: its frames are not in this file"))
    number = chunks.small["number"]
    for i in np.flatnonzero(np.diff(number) > 1):
        out.append((float(ts[i]), float(ts[i + 1]),
                    f"{int(number[i + 1] - number[i] - 1)} acquisition frames ({int(number[i]) + 1}.."
                    f"{int(number[i + 1]) - 1}) never reached rtdecode (lost upstream)"))
    if end is None and ts.size:
        out.append((float(ts[-1]), float(ts[-1]) + float(meta.get("chunk_s", 1.0)),
                    "the session did not stop cleanly (no end.json: killed?): up to one chunk of frames after "
                    "the last one written was never written"))
    return sorted(out)


def _add_ecephys(nwb, config: dict, protocol: str, n: int, stream, clock, types: set, missing: list) -> None:
    """Ephys: processing/ecephys (the binned counts and what each column counts) and, for Open Ephys
    channels, the device, electrode group and electrodes table."""
    from hdmf.common import DynamicTable, VectorData
    from pynwb import TimeSeries

    src = config.get("source") or {}
    ex = (config.get("extraction") or {}).get("ephys") or {}
    labels = ([str(c) for c in src["channels"]] if src.get("channels") else
              [str(u) for u in src["units"]] if src.get("units") else [str(i) for i in range(n)])
    channels = protocols.get(protocol).inputs_key == "channels"  # inputs are recording channels (electrodes)
    what = "channel" if channels else (src.get("group_by") or "electrode")
    ecephys = nwb.create_processing_module("ecephys", f"Open Ephys data binned live by rtdecode ({protocol})")
    if channels:
        device = nwb.create_device(name="OpenEphys", description=f"Open Ephys GUI, ZMQ Interface "
                                   f"{', '.join(src.get('address', []))}, stream {src.get('stream')}")
        group = nwb.create_electrode_group(name="channels", description="the channels rtdecode binned",
                                           location="unknown (not recorded by rtdecode)", device=device)
        nwb.add_electrode_column("channel_name", "the Open Ephys channel number, as in the rig file")
        for label in labels:
            nwb.add_electrode(group=group, location="unknown (not recorded by rtdecode)", channel_name=label)
        types |= {"Device", "ElectrodeGroup", "ElectrodesTable"}
    ecephys.add(DynamicTable(name="ActivityInputs", description=f"one row per column of BinnedActivity: the "
                             f"{what} it counts", columns=[
                                 VectorData(name="label", data=labels, description=f"{what} label"),
                                 VectorData(name="kind", data=[what] * len(labels), description="channel, "
                                            "electrode or unit")]))
    ecephys.add(TimeSeries(name="BinnedActivity", data=stream("activity"), unit="events per bin",
                           timestamps=clock,
                           description=f"threshold crossings or sorted spikes counted per {what} and bin, "
                           f"(bin, input); bin {ex.get('bin_ms', '?')} ms, threshold {ex.get('threshold', '?')}"
                           f" x noise; timestamps are each bin's end"))
    types.add("DynamicTable")
    missing.append("detected events (spike times): rtdecode records only the binned counts")


def _add_triggers(nwb, events: list[dict], config: dict, t0: float, types: set) -> None:
    """intervals/triggers: one row per recorded trigger; `t0` is session_start_time (Unix s)."""
    from pynwb.epoch import TimeIntervals

    if not events:
        return
    outputs = {t.get("name"): f"{t.get('kind')} {t.get('address')}" for t in config.get("triggers") or []}
    tr = TimeIntervals(name="triggers", description="every trigger recorded live: from the acquisition of the "
                       "decoded frame that fired it (frame_time) to the moment it was sent (rtdecode's clock; "
                       "start = stop = sent time if the two clocks disagree)")
    cols = [("rule", "the rule that fired"), ("score", "the rule's score on the decoded frame"),
            ("frame_time", "acquisition time of the decoded frame (s)"), ("trial", "stimulus trial, -1 unknown"),
            ("stimulus_frame", "stimulus frame, -1 unknown"),
            ("acquisition_frame", "acquisition frame number, -1 unknown"), ("output", "where it was sent"),
            ("status", "the record's status, else 'suppressed' if it says so, else 'fired' (today's engine "
                       "records the triggers it fires)"),
            ("other", "any other fields of the record, JSON")]
    for name, desc in cols:
        tr.add_column(name=name, description=desc)
    known = {"rule", "score", "t_frame", "t", "trial", "frame", "frameNumberAcq", "output", "status", "suppressed"}

    def num(v, default):
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else default

    for e in events:
        sent = float(num(e.get("t"), num(e.get("t_frame"), math.nan))) - t0
        acquired = float(num(e.get("t_frame"), math.nan)) - t0
        tr.add_interval(start_time=acquired if acquired <= sent else sent, stop_time=sent, rule=str(e.get("rule", "")),
                        score=float(num(e.get("score"), math.nan)),
                        frame_time=float(num(e.get("t_frame"), math.nan)) - t0, trial=int(num(e.get("trial"), -1)),
                        stimulus_frame=int(num(e.get("frame"), -1)),
                        acquisition_frame=int(num(e.get("frameNumberAcq"), -1)),
                        output=str(e.get("output", outputs.get(e.get("rule"), "not recorded"))),
                        status=str(e.get("status") or ("suppressed" if e.get("suppressed") else "fired")),
                        other=json.dumps({k: v for k, v in e.items() if k not in known}, default=str))
    nwb.add_time_intervals(tr)
    types.add("TimeIntervals")


SUBJECT_OPTIONS = ("subject_id", "species", "sex", "age", "date_of_birth", "strain")


def recorded_metadata(session: str | Path) -> dict:
    """The rig file's `session_metadata` as recorded in the session's session.json ({} if none, or
    if session.json is unreadable: the export's checked reader reports that)."""
    try:
        meta = json.loads((Path(session) / "session.json").read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    md = (meta.get("config") or {}).get("session_metadata") if isinstance(meta, dict) else None
    return md if isinstance(md, dict) else {}


def merge_metadata(recorded: dict, overrides: dict | None) -> dict:
    """`recorded` (the rig file's session_metadata) with each key of `overrides` that is not None in
    its place; `subject` and `imaging_plane` are merged field by field. Keys set to None (as a rig
    file's model dump writes the ones left out) are dropped."""
    merged = {k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v)
              for k, v in recorded.items() if v is not None}
    for key, value in (overrides or {}).items():
        if key in ("subject", "imaging_plane") and isinstance(value, dict):
            given = {k: v for k, v in value.items() if v is not None}
            if given:
                merged[key] = {**(merged.get(key) or {}), **given}
        elif value is not None:
            merged[key] = value
    return merged


def _metadata_problem(md) -> str | None:
    """What in a metadata dict NWB cannot take (the rig file's model, rtdecode.live.config.
    SessionMetadata, checks it fully where the rig file and the export options are read)."""
    if not isinstance(md, dict):
        return f"not a mapping but {type(md).__name__}"
    for key in ("subject", "imaging_plane"):
        if not isinstance(md.get(key) or {}, dict):
            return f"{key} is not a mapping"
    texts = [v for k, v in md.items() if k not in ("subject", "imaging_plane", "experimenter", "keywords")]
    texts += list((md.get("subject") or {}).values())
    texts += [v for k, v in (md.get("imaging_plane") or {}).items() if k in ("location", "indicator")]
    lists = [md.get("experimenter") or [], md.get("keywords") or []]
    if not all(isinstance(v, str) for v in texts) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists):
        return "holds values that are not text"
    return None


def dandi_missing(md: dict, kind: str) -> list[str]:
    """What DANDI requires (nwbinspector CRITICAL under --config dandi) or recommends that `md` lacks."""
    sub = md.get("subject") or {}
    need = [f"subject.{k}" for k in ("subject_id", "species", "sex") if not sub.get(k)]
    if not sub.get("age") and not sub.get("date_of_birth"):
        need.append("subject.age or subject.date_of_birth")
    want = [k for k in ("experimenter", "institution", "experiment_description") if not md.get(k)]
    if kind == "two_photon":
        want += [f"imaging_plane.{k}" for k in ("location", "indicator") if not (md.get("imaging_plane") or {}).get(k)]
    return ([f"{k} (required)" for k in need] + [f"{k} (recommended)" for k in want])


def _subject(md: dict):
    """The NWB Subject of the metadata (None if nothing is known of the animal)."""
    from pynwb.file import Subject

    sub = dict(md.get("subject") or {})
    if not sub:
        return None
    if sub.get("date_of_birth"):
        dob = datetime.fromisoformat(sub["date_of_birth"])
        sub["date_of_birth"] = dob if dob.tzinfo is not None else dob.replace(tzinfo=timezone.utc)
    return Subject(**sub)


def export_nwb(session: str | Path, out: str | Path, rois: str | Path | None = None, compress: bool = True,
               progress: bool = False, subject: dict | None = None, experimenter: str | list | None = None,
               institution: str | None = None, metadata: dict | None = None, allow_damaged: bool = False) -> dict:
    """Write a recorded session folder (rtdecode.outputs.record) to the NWB file `out`.

    The session is read through the checked reader of `rtdecode inspect` (rtdecode.offline.
    session_chunks): a session it finds damaged (a chunk whose SHA-256 differs from the manifest,
    chunks out of place, arrays larger or of other shapes than the session's, an impossible
    session.json, ROI files that are not plain arrays, ...) is refused with RecordError naming what
    is damaged, unless `allow_damaged`: then only what is whole is written, and the damaged ranges go
    to invalid_times.
    rois: a suite2p plane folder for two-photon sessions recorded without rois.npz.
    metadata: the session's metadata as `rtdecode export` resolves and checks it (rtdecode.live.config.
    resolve_session_metadata: the rig file's `session_metadata` recorded in session.json, overridden
    by the options; subject {subject_id, species, sex, age, date_of_birth, strain, ...},
    experimenter, institution, lab, experiment_description, keywords, imaging_plane {location,
    indicator, ...}). None: the recorded `session_metadata`, overridden by `subject` (fields),
    `experimenter` and `institution`. Nothing of the animal is invented: what is not given is left
    out, and listed in the report's `dandi_missing`.
    compress: gzip (level 4) the large datasets. Returns a report: {'path', 'frames', 'kind',
    'missing' (what the file does not hold, and why), 'dandi_missing' (metadata DANDI requires or
    recommends that was not given), 'notes' (what nwbinspector will say, and why), 'damaged' (what
    was left out, with allow_damaged),
    'invalid_ranges', 'neurodata_types'}.
    RecordError if `session` is not a session, is damaged (without allow_damaged), or holds no
    readable frame, or if the metadata is not text where NWB needs text.
    """
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.file import ProcessingModule
    from pynwb.image import ImageSeries
    from tqdm import tqdm

    folder, out = Path(session), Path(out)
    chunks = SessionChunks(folder)
    meta, end = chunks.scan["meta"], chunks.scan["end"]
    if chunks.problems and not allow_damaged:
        shown = chunks.problems[:8]
        more = f"; and {len(chunks.problems) - len(shown)} more" if len(chunks.problems) > len(shown) else ""
        raise RecordError(f"{folder} is damaged: {'; '.join(shown)}{more}. Nothing was written. 'rtdecode inspect "
                          f"{folder}' lists it; 'rtdecode export --allow-damaged' writes only what is whole, with the "
                          "damaged ranges in invalid_times")
    if chunks.total == 0:
        raise RecordError(f"{folder} holds no readable frame ({len(chunks.damaged)} damaged chunks); nothing to export")
    events = [e for e in chunks.scan["triggers"] if isinstance(e, dict)]
    bad_triggers = [p for p in chunks.problems if p.startswith("triggers.jsonl line")]
    if len(events) < len(chunks.scan["triggers"]):
        bad_triggers.append(f"{len(chunks.scan['triggers']) - len(events)} triggers.jsonl lines are not JSON objects")
    small = chunks.small
    start = _start_time(meta, small["t"])
    ts = small["t"] - start.timestamp()
    T = chunks.total
    N = int(chunks.specs["activity"][0][0])  # as recorded (session.json's claim is checked by the reader)
    config = meta.get("config") or {}
    protocol = (config.get("source") or {}).get("protocol", "rtframe")
    try:
        kind = protocols.get(protocol).modality
    except ConfigError as exc:
        raise RecordError(f"{folder}: session.json's source.protocol {exc}") from None
    missing: list[str] = []
    types: set[str] = set()
    people = [experimenter] if isinstance(experimenter, str) else experimenter
    if metadata is None:  # the API without the CLI's checked metadata: the recorded one, these overrides
        recorded = (meta.get("config") or {}).get("session_metadata") or {}
        md = merge_metadata(recorded if isinstance(recorded, dict) else {},
                            {"subject": subject, "experimenter": people, "institution": institution})
    else:
        md = metadata
    problem = _metadata_problem(md)
    if problem:
        raise RecordError(f"the session metadata (the rig file's session_metadata in {folder}/session.json, or the "
                          f"export options) {problem}; give the metadata as export options (docs/nwb.md)")
    need = dandi_missing(md, kind)

    big = [k for k in chunks.specs if k not in SMALL]
    bar = tqdm(total=0, unit="chunk", desc=f"NWB {out.name}", disable=not progress)

    def stream(key, columns=None):
        bar.total += len(chunks.paths)
        it = _chunk_iterator(chunks, key, bar, columns)
        if compress:
            return H5DataIO(it, compression="gzip", compression_opts=4, chunks=it.recommended_chunk_shape())
        return H5DataIO(it, chunks=it.recommended_chunk_shape())

    def dump(obj) -> str:
        return json.dumps(obj, indent=1, default=str)

    recorded_with = f"rtdecode {meta.get('rtdecode_version', '?')} (commit {meta.get('rtdecode_commit') or 'unknown'})"
    damaged = bool(chunks.problems or chunks.missing or end is None or bad_triggers)
    nwb = NWBFile(
        session_description=(f"rtdecode live decoding session '{folder.name}' ({kind.replace('_', '-')}), "
                             f"{T} frames recorded with {recorded_with}"
                             + ("; DAMAGED or cut short: see invalid_times" if damaged else "")),
        identifier=str(uuid.uuid4()), session_start_time=start, timestamps_reference_time=start,
        session_id=folder.name.replace("/", "_"),
        keywords=["rtdecode", "closed-loop", "neural decoding", "visual reconstruction"] + md.get("keywords", []),
        source_script=f"rtdecode {rtdecode.__version__} (commit {git_commit() or 'unknown'}): rtdecode export --nwb",
        source_script_file_name="rtdecode/offline/nwb_export.py",
        notes=(f"Recorded with {recorded_with}; rig file {meta.get('config_file', 'not recorded')}; backend "
               f"{meta.get('backend', 'unknown')}; stopped {'cleanly' if end is not None else 'NOT cleanly (killed?)'}."
               " Times are seconds from session_start_time on the acquisition sender's clock (rtframe 't')."
               + (f" Unreadable trigger records: {'; '.join(bad_triggers)}." if bad_triggers else "")),
        experimenter=md.get("experimenter"), institution=md.get("institution"), lab=md.get("lab"),
        experiment_description=md.get("experiment_description"), subject=_subject(md),
        stimulus_notes="StimulusShown: (trial, stimulus frame) on screen at each acquisition frame, (-1, -1) unknown.",
    )
    nwb.add_scratch(dump(meta), name="rtdecode_session", description="session.json as recorded (rig file, model card, ...)")
    if meta.get("model_card") is not None:
        nwb.add_scratch(dump(meta["model_card"]), name="model_card", description="the decoder's model card (card.json)")
    if config:
        nwb.add_scratch(dump(config), name="rig_config", description=f"the rig file, as loaded ({meta.get('config_file')})")
    if end is not None:
        nwb.add_scratch(dump(end), name="session_end",
                        description="end.json: the session's counters (dropped, rejected, lost, records), latency summaries")
    else:
        missing.append("end.json (counters, latency summaries): the session did not stop cleanly")
    types.add("ScratchData")

    # Decoding: the decoder's output is neither one modality's data nor behaviour: the schema's 'misc'
    # module (docs/nwb.md). Its frame counter carries the timestamps every other series links to.
    dec = ProcessingModule(name="misc", description="what rtdecode decoded live from the neural data, per "
                           "acquisition frame: the decoded video, what it reconstructs, the latency, the frame clock")
    nwb.add_processing_module(dec)
    clock = TimeSeries(name="AcquisitionFrameNumber", data=small["number"], unit="frames", timestamps=ts,
                       description="the acquisition frame counter (ScanImage frameNumberAcq, or the bin index of "
                       "ephys); a jump means frames lost before rtdecode")
    dec.add(clock)
    dec.add(TimeSeries(name="DecodedTarget", data=small["target"], unit="index", timestamps=clock,
                       description="(trial, stimulus frame) the decoded frame reconstructs, (frame, 2); (-1, -1) "
                       "unknown or not decoded yet"))
    dec.add(TimeSeries(name="Latency", data=small["latency_s"], unit="seconds", timestamps=clock,
                       description="from the frame message's arrival to its record (extraction and decoding)"))
    dec.add(ImageSeries(name="DecodedVideo", data=stream("decoded"), unit="pixel value (stimulus scale 0-255)",
                        timestamps=clock, format="raw",
                        description="the decoded frame after each acquisition frame, (frame, height, width) "
                        "as recorded; NaN while the decoder's window was not yet full"))
    types |= {"ProcessingModule", "TimeSeries", "ImageSeries"}

    # Stimulus.
    nwb.add_stimulus(TimeSeries(name="StimulusShown", data=small["shown"], unit="index", timestamps=clock,
                                description="(trial, stimulus frame) on screen at each acquisition frame "
                                "(from the stimulus stream); (-1, -1) unknown"))
    if "stimulus" in chunks.specs and chunks.nonzero.get("stimulus"):
        nwb.add_stimulus(ImageSeries(name="StimulusImages", data=stream("stimulus"), unit="pixel value 0-255",
                                     timestamps=clock, format="raw",
                                     description="the stimulus image on screen at each acquisition frame, "
                                     "(frame, height, width); zeros where the stimulus stream sent no image"))
    else:
        missing.append("stimulus images: the stimulus stream carried none")
    trial = small["shown"][:, 0]
    runs = np.flatnonzero(np.diff(np.r_[-2, trial, -2]) != 0)
    rows = [(a, b - 1) for a, b in zip(runs[:-1], runs[1:]) if trial[a] >= 0]
    if rows:
        nwb.add_trial_column("stimulus_trial", "the stimulus trial (movie) shown")
        for a, b in rows:
            nwb.add_trial(start_time=float(ts[a]), stop_time=float(ts[b]), stimulus_trial=int(trial[a]))
        types.add("TimeIntervals")

    # Neural data.
    extras = [k for k in big if k not in ("decoded", "stimulus", "activity", "F", "Fneu", "dff", "shifts")]
    if kind == "two_photon":
        add_ophys(nwb, folder, rois, chunks, meta, config, protocol, stream, clock, types, missing,
                  md.get("imaging_plane"))
    else:
        extras += [k for k in ("F", "Fneu", "dff", "shifts") if k in big]
        _add_ecephys(nwb, config, protocol, N, stream, clock, types, missing)
    for key in extras:  # anything else the session recorded per frame
        dec.add(TimeSeries(name=key, data=stream(key), unit="a.u.", timestamps=clock,
                           description=f"'{key}' as recorded per acquisition frame"))

    _add_triggers(nwb, events, config, start.timestamp(), types)

    # What the file does not hold.
    invalid = _invalid_ranges(chunks, ts, meta, end)
    missing += bad_triggers
    if invalid:
        nwb.add_invalid_times_column("reason", "why this range is missing")
        for t0_, t1_, why in invalid:
            nwb.add_invalid_time_interval(start_time=t0_, stop_time=max(t1_, t0_), reason=why)
        types.add("TimeIntervals")
    for k, why in chunks.damaged:
        missing.append(f"chunk {k:06d}: {why}")
    for k in chunks.missing:
        missing.append(f"chunk {k:06d}: missing")
    unfinished = chunks.scan["unfinished_chunks"]
    if unfinished:
        missing.append(f"unfinished files (never completed): {', '.join(unfinished)}")

    tmp = out.with_name(out.stem + ".partial.nwb")  # renamed once whole
    try:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
        os.replace(tmp, out)
    except OSError as exc:
        raise RecordError(f"cannot write {out}: {exc}") from None
    finally:
        bar.close()
        if tmp.exists():
            tmp.unlink()
    types |= {"NWBFile"} | ({"Subject"} if nwb.subject is not None else set())
    notes = []
    if any(d > T for d in chunks.specs["activity"][0]):
        notes.append(f"{T} frames and {N} inputs: every series is stored time first, (frames, inputs), but "
                     "nwbinspector's check_data_orientation (a heuristic: the longest axis should be time) flags "
                     "them; --config dandi rates it a best-practice violation, not CRITICAL (docs/nwb.md)")
    log.info("exported %d frames of %s to %s%s", T, folder, out, f" ({len(missing)} gaps)" if missing else "")
    return {"path": str(out), "frames": T, "kind": kind, "missing": missing, "dandi_missing": need, "notes": notes,
            "damaged": list(chunks.problems), "invalid_ranges": [list(r) for r in invalid],
            "neurodata_types": sorted(types)}
