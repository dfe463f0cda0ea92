"""A virtual Neuropixels-like probe in mouse V1, streaming as the Open Ephys GUI does.

The virtual mouse's units (rtdecode.rig.population: Poisson spikes of the realistic profile, with its
behaviour-driven gain) sit along a probe of `n_channels` sites (Neuropixels 1.0 geometry:
rtdecode.rig.ephys.channel_positions, 20 um rows, 2 columns of sites per row). Each unit has a peak
site, an amplitude and a spatial footprint; its spikes are added as a waveform on its peak channel and
its neighbours, on top of band-limited noise, so that threshold crossings on a channel see the
multi-unit activity of several units, as on a real probe.

Published numbers the defaults follow (sources in docs/ephys.md):
- noise: `NOISE_UV` = 5.5 uV rms per channel in the action-potential band (Neuropixels 1.0: about
  5-6 uV rms, Jun et al. 2017, Nature 551:232);
- unit density: `UNITS_PER_CHANNEL` = 0.8 units per recording channel, i.e. 300 units on 384
  channels (Steinmetz et al. 2019, Nature 576:266: ~30,000 units from 92 Neuropixels insertions, about
  317 per insertion; the insertion count is not checked, docs/ephys.md);
- amplitudes: trough amplitudes lognormal, median `AMP_MEDIAN_UV` = 60 uV, spread 0.5 (e-fold), so
  that most sorted units lie between ~25 and ~150 uV and a share of them sit near a 4.5 x noise
  threshold (the range of Kilosort-sorted Neuropixels units, Jun et al. 2017 Fig. 3 / Siegle et al.
  2021, Nature 592:86); the footprint decays as exp(-d / 30 um) from the peak site and is cut at 70 um.

Generation keeps up with real time on a loaded machine: the noise is a few precomputed blocks
(band-passed 300-6000 Hz, plus a small common-mode part) read at random offsets, and spikes are added
sparsely, one waveform slice each (`Probe.block`). `python benchmarks/research/ephys_rehearsal.py`
measures it.

`ProbeStreamer` publishes it on real sockets in the plugins' exact wire formats (REFERENCES C,
reusing the emulator's sockets: rtdecode.sources.openephys.emulator):
- ZMQ Interface: one `DATA` message per channel per block of `block_size` samples (float32 uV), with
  its heartbeat REP on data_port + 1;
- Event Broadcaster (JSON format): every sorted spike (a perfect sorter: every spike of every unit;
  electrode `ELECTRODE`, sorted_id = unit index + 1, amp1..amp4 on its four strongest channels);
- the stimulus PC: rtframe `stim` messages (trial, frame and the 36x64 uint8 image) on their own
  socket, from their own thread and clock (`stim_clock_offset_s`), at each frame's onset.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
import zmq

from rtdecode.errors import ConfigError
from rtdecode.rig import VirtualRig
from rtdecode.rig.ephys import SAMPLE_RATE, channel_positions, spike_times
from rtdecode.sources import wire
from rtdecode.sources.exposure import bound
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.emulator import Emulator
from rtdecode.stimuli.movies import FPS

log = logging.getLogger(__name__)

NOISE_UV = 5.5  # rms per channel in the AP band (Jun et al. 2017: ~5-6 uV rms)
COMMON_UV = 1.5  # rms of the part shared by every channel (removed by a common reference)
UNITS_PER_CHANNEL = 0.8  # Steinmetz et al. 2019: ~317 units per Neuropixels insertion (384 channels)
AMP_MEDIAN_UV = 60.0  # median trough amplitude on the peak channel
AMP_SIGMA = 0.5  # lognormal spread of the amplitudes
DECAY_UM = 30.0  # footprint: amplitude x exp(-distance / DECAY_UM)
RADIUS_UM = 70.0  # footprint cut
WAVE_SAMPLES = 60  # 2 ms at 30 kHz; the trough at sample 20
ELECTRODE = "Probe"  # the Event Broadcaster's electrode name of every sorted unit
STREAM = "ProbeA-AP"
MAX_CHANNELS = 384
MAX_UNITS = 20_000


def default_units(n_channels: int) -> int:
    """Units on a probe of `n_channels` at the published density (UNITS_PER_CHANNEL)."""
    return max(1, round(UNITS_PER_CHANNEL * n_channels))


class Probe:
    """Geometry, units and voltage of a virtual probe.

    n_channels: recording sites used (<= 384; 64 keeps tests light). n_units: units (default
    `default_units`). fs: sample rate, Hz. noise_uv: rms per channel after the 300-6000 Hz band.
    """

    def __init__(self, n_channels: int = 384, n_units: int | None = None, seed: int = 0, fs: float = SAMPLE_RATE,
                 noise_uv: float = NOISE_UV, noise_blocks: int = 6, noise_len: int = 8192):
        if not 1 <= n_channels <= MAX_CHANNELS:
            raise ConfigError(f"--probe-channels must lie in 1..{MAX_CHANNELS}, got {n_channels}")
        n_units = default_units(n_channels) if n_units is None else int(n_units)
        if not 1 <= n_units <= MAX_UNITS:
            raise ConfigError(f"--units must lie in 1..{MAX_UNITS}, got {n_units}")
        if not (fs > 0 and math.isfinite(fs)) or not (noise_uv >= 0 and math.isfinite(noise_uv)):
            raise ConfigError(f"sample rate must be > 0 and noise >= 0, got {fs}, {noise_uv}")
        self.C, self.N, self.fs, self.seed = int(n_channels), n_units, float(fs), int(seed)
        rng = np.random.default_rng([seed, 31])
        pos = channel_positions()[: self.C].astype(np.float64)  # (C, 2) um
        self.positions = pos
        # units: depth uniform along the sites used, x across the shank's width
        depth = rng.uniform(pos[:, 1].min() - 10, pos[:, 1].max() + 10, n_units)
        x = rng.uniform(0, 70, n_units)
        d = np.hypot(pos[None, :, 0] - x[:, None], pos[None, :, 1] - depth[:, None])  # (N, C)
        self.peak = np.argmin(d, 1).astype(np.int32)
        self.amplitude = rng.lognormal(np.log(AMP_MEDIAN_UV), AMP_SIGMA, n_units).astype(np.float32)
        gain = np.exp(-(d - d.min(1, keepdims=True)) / DECAY_UM)
        self.channels: list[np.ndarray] = []
        self.templates: list[np.ndarray] = []  # (n_ch_u, WAVE_SAMPLES) float32 uV
        t = np.arange(WAVE_SAMPLES) / self.fs * 1e3  # ms
        for u in range(n_units):
            ch = np.flatnonzero(d[u] - d[u].min() <= RADIUS_UM)
            ch = ch[np.argsort(-gain[u, ch])]  # strongest first
            w_trough = rng.uniform(0.10, 0.20)  # ms
            w_peak = rng.uniform(0.25, 0.50)
            shape = (-np.exp(-0.5 * ((t - 0.667) / w_trough) ** 2)
                     + 0.35 * np.exp(-0.5 * ((t - 0.667 - 0.45) / w_peak) ** 2))
            shape /= -shape.min()
            self.channels.append(ch.astype(np.int32))
            self.templates.append((self.amplitude[u] * gain[u, ch, None] * shape[None, :]).astype(np.float32))
        self.noise = self._noise_blocks(np.random.default_rng([seed, 32]), noise_blocks, noise_len, noise_uv)
        self._rng = np.random.default_rng([seed, 33])
        self._carry = np.zeros((self.C, WAVE_SAMPLES), np.float32)

    def _noise_blocks(self, rng, k: int, n: int, rms: float) -> np.ndarray:
        """(k, C, n) float32: band-limited Gaussian noise (300-6000 Hz), `rms` per channel, plus a
        common-mode part of COMMON_UV rms (scaled with `rms`)."""
        from scipy import signal

        sos = signal.butter(3, [300.0, min(6000.0, 0.45 * self.fs)], "bandpass", fs=self.fs, output="sos")
        out = np.empty((k, self.C, n), np.float32)
        common = COMMON_UV * rms / NOISE_UV
        for i in range(k):
            z = signal.sosfiltfilt(sos, rng.standard_normal((self.C, n + 512)), axis=1)[:, 256:-256]
            z *= math.sqrt(max(rms**2 - common**2, 0.0)) / max(float(z.std()), 1e-12)
            c = signal.sosfiltfilt(sos, rng.standard_normal(n + 512))[256:-256]
            z += c * (common / max(float(c.std()), 1e-12))
            out[i] = z
        return out

    def reset(self) -> None:
        """Restart the noise draw and clear the waveforms running over the end of the last block."""
        self._rng = np.random.default_rng([self.seed, 33])
        self._carry[:] = 0

    def block(self, b0: int, n: int, samples: np.ndarray, units: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Voltage of samples [b0, b0 + n): (C, n) float32 uV.

        samples, units: (S,) int64 sample numbers (each in [b0, b0 + n)) and unit indices of the spikes
        whose waveform starts in this block (its trough WAVE_SAMPLES / 3 later); a waveform running
        past the block's end continues in the next call. Calls must be consecutive (b0 = last b0 + n).
        """
        if out is None or out.shape != (self.C, n):
            out = np.empty((self.C, n), np.float32)
        L = self.noise.shape[2]
        if n > L:
            raise ConfigError(f"a block of {n} samples is longer than the noise blocks ({L})")
        k = int(self._rng.integers(self.noise.shape[0]))
        o = int(self._rng.integers(L - n + 1))
        np.copyto(out, self.noise[k, :, o:o + n])
        W = WAVE_SAMPLES
        m = min(W, n)
        out[:, :m] += self._carry[:, :m]
        carry = np.zeros_like(self._carry)
        if m < W:  # a block shorter than a waveform: what is left carries on
            carry[:, : W - m] = self._carry[:, m:]
        ext = np.zeros((self.C, n + W), np.float32) if samples.size else None
        for s, u in zip((samples - b0).tolist(), units.tolist()):
            ext[self.channels[u], s:s + W] += self.templates[u]
        if ext is not None:
            out += ext[:, :n]
            carry += ext[:, n:n + W]
        self._carry = carry
        return out


@dataclass
class Session:
    """What the probe streams: trials back to back from sample 0, 1000 samples per stimulus frame.

    spikes: (S,) int64 sample numbers (sorted) and units (S,) int64; frames: [(trial, frame index in
    trial, uint8 (36, 64) image)] in presentation order; frame k is on screen from sample
    round(k * fs / FPS)."""

    samples: np.ndarray
    units: np.ndarray
    frames: list
    n_samples: int


def make_session(probe: Probe, rig: VirtualRig, trials: list[int], max_frames: int | None = None) -> Session:
    """The spikes of `probe.N` units of `rig` (its first N neurons) over `trials`, at the probe's rate."""
    if rig.n_neurons != probe.N:
        raise ConfigError(f"the virtual mouse has {rig.n_neurons} neurons, the probe {probe.N} units")
    rng = np.random.default_rng([probe.seed, 34])
    all_t, all_u, frames = [], [], []
    t0 = 0.0
    for i in trials:
        if max_frames is not None and len(frames) >= max_frames:
            break
        tr = rig.trial(i)
        spikes = tr.spikes
        if max_frames is not None:
            spikes = spikes[: max(0, max_frames - len(frames))]
        if not spikes.shape[0]:
            break
        times, units = spike_times(spikes, FPS, rng, t0)
        all_t.append(times)
        all_u.append(units)
        stim8 = np.clip(tr.movie[: spikes.shape[0]] + 0.5, 0, 255).astype(np.uint8)
        frames.extend((tr.index, k, stim8[k]) for k in range(spikes.shape[0]))
        t0 += spikes.shape[0] / FPS
    times = np.concatenate(all_t) if all_t else np.zeros(0)
    units = np.concatenate(all_u).astype(np.int64) if all_u else np.zeros(0, np.int64)
    # the waveform starts WAVE_SAMPLES/3 before the trough (the spike time)
    samples = np.maximum(np.round(times * probe.fs).astype(np.int64) - WAVE_SAMPLES // 3, 0)
    order = np.argsort(samples, kind="stable")
    return Session(samples[order], units[order], frames, int(round(len(frames) * probe.fs / FPS)))


class ProbeStreamer(Emulator):
    """The virtual probe on the Open Ephys plugins' sockets (see the module doc), plus the stimulus PC.

    data_port / broadcaster_port: as the emulator's (0: any free port; broadcaster None: off).
    stim_endpoint: bind address of the rtframe `stim` socket (None: no stimulus stream).
    stim_clock_offset_s: the stimulus PC's clock minus this PC's (its messages' `t`).
    """

    def __init__(self, probe: Probe, session: Session, host: str = "127.0.0.1", data_port: int = 0,
                 broadcaster_port: int | None = 0, stim_endpoint: str | None = None, speed: float = 1.0,
                 block_size: int = 1024, wait_subscriber_s: float = 10.0, stim_clock_offset_s: float = 0.0,
                 context: zmq.Context | None = None):
        if not 16 <= block_size <= probe.noise.shape[2]:
            raise ConfigError(f"block_size must lie in 16..{probe.noise.shape[2]}, got {block_size}")
        if not (speed >= 0 and math.isfinite(speed)):
            raise ConfigError(f"speed must be >= 0, got {speed}")
        self.probe, self.session = probe, session
        self.speed, self.block_size = float(speed), int(block_size)
        self.stim_clock_offset_s = float(stim_clock_offset_s)
        self._open(host, data_port, broadcaster_port, wait_subscriber_s, context)
        for sock in (self.data_sock, self.eb_sock):  # a reader behind by seconds still gets the end of the stream
            if sock is not None:
                sock.setsockopt(zmq.LINGER, 10_000)
        self.stim_sock = None
        self.stim_endpoint = None
        if stim_endpoint is not None:
            self.stim_sock = self.ctx.socket(zmq.XPUB)
            self.stim_sock.setsockopt(zmq.SNDHWM, 1000)
            self.stim_sock.setsockopt(zmq.LINGER, 2000)
            try:
                self.stim_sock.bind(stim_endpoint)
            except zmq.ZMQError as exc:
                self.close()
                raise ConfigError(f"cannot bind the stimulus socket {stim_endpoint}: {exc}") from None
            self.stim_endpoint = bound(self.stim_sock, "the virtual stimulus PC")
        self.names = [f"CH{c + 1}" for c in range(probe.C)]

    def close(self) -> None:
        super().close()
        if getattr(self, "stim_sock", None) is not None:
            self.stim_sock.close()

    def _wait_any(self, grace_s: float = 1.0) -> bool:
        """Wait (up to wait_subscriber_s) for a subscriber on the ZMQ Interface or the Event Broadcaster
        socket (a live session reads one of the two), then up to `grace_s` for the stimulus socket and
        the other one: subscribers of one session connect to them together."""
        socks = {self.data_sock: "ZMQ Interface"}
        if self.eb_sock is not None:
            socks[self.eb_sock] = "Event Broadcaster"
        if self.stim_sock is not None:
            socks[self.stim_sock] = "stimulus"
        poller = zmq.Poller()
        for sock in socks:
            poller.register(sock, zmq.POLLIN)
        joined: set = set()
        deadline = time.monotonic() + max(self.wait_subscriber_s, 0.0)
        first = None
        while not self._stop.is_set():
            now = time.monotonic()
            end = deadline if first is None else min(deadline, first + grace_s)
            if now >= end or len(joined) == len(socks):
                break
            for sock, _ in poller.poll(int(max(1, (end - now) * 1000))):
                if sock.recv()[:1] == b"\x01":
                    joined.add(sock)
                    if first is None and sock is not self.stim_sock:
                        first = time.monotonic()
        if not any(s in joined for s in (self.data_sock, self.eb_sock)):
            log.warning("virtual probe: no subscriber within %.1f s; publishing anyway", self.wait_subscriber_s)
            return False
        log.info("virtual probe: subscribers on %s", ", ".join(socks[s] for s in joined))
        time.sleep(0.05)
        return True

    def _stim_loop(self, t0: float, wall0: float, sent: dict) -> None:
        """Each stimulus frame at its onset (perf_counter t0 + k / FPS / speed), `t` on the stimulus
        PC's clock."""
        seq = wire.Sequencer()
        period = 1.0 / (FPS * self.speed) if self.speed > 0 else 0.0
        for k, (trial, frame, image) in enumerate(self.session.frames):
            if self._stop.is_set():
                return
            if period:
                delay = t0 + k * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            t = wall0 + k * period + self.stim_clock_offset_s if period else time.time() + self.stim_clock_offset_s
            self.stim_sock.send_multipart(wire.encode("stim", seq(), t, image, frame=frame, trial=trial))
            sent["stim"] += 1

    def run(self) -> dict:
        """Stream the whole session (blocking). Returns counts and timing, with the generation time
        (`generate_s`: noise + waveforms) apart from the sending time."""
        p, ses = self.probe, self.session
        self._wait_any()
        p.reset()
        counts = {"data": 0, "spike": 0, "broadcast": 0, "blocks": 0, "stim": 0}
        gen_s = send_s = 0.0
        fs, B, n = p.fs, self.block_size, ses.n_samples
        period = 0.0 if self.speed <= 0 else 1.0 / (fs * self.speed)
        t0, wall0 = time.perf_counter(), time.time()
        stim_thread = None
        if self.stim_sock is not None:
            stim_thread = threading.Thread(target=self._stim_loop, args=(t0, wall0, counts), name="virtual-stim-pc",
                                           daemon=True)
            stim_thread.start()
        msg_num, si = 0, 0
        buf = np.empty((p.C, B), np.float32)
        late_max = 0.0
        for b0 in range(0, n, B):
            if self._stop.is_set():
                break
            b1 = min(n, b0 + B)
            g0 = time.perf_counter()
            sj = int(np.searchsorted(ses.samples, b1, "left"))
            x = p.block(b0, b1 - b0, ses.samples[si:sj], ses.units[si:sj], buf[:, : b1 - b0] if b1 - b0 < B else buf)
            g1 = time.perf_counter()
            gen_s += g1 - g0
            if period:  # a block goes out when its last sample has been acquired
                delay = t0 + b1 * period - g1
                if delay > 0:
                    time.sleep(delay)
                else:
                    late_max = max(late_max, -delay)
            s0 = time.perf_counter()
            ts = round((wall0 + b1 * period if period else time.time()) * 1000.0, 3)
            for ch in range(p.C):
                msg_num += 1
                self.data_sock.send_multipart(ziw.encode_data(msg_num, STREAM, ch, self.names[ch], b0, fs, x[ch], ts))
            counts["data"] += p.C
            if self.eb_sock is not None:
                for s, u in zip(ses.samples[si:sj].tolist(), ses.units[si:sj].tolist()):
                    tpl = p.templates[u]
                    amps = [-float(a) for a in tpl[:4, WAVE_SAMPLES // 3]]
                    self.eb_sock.send_multipart(eb.encode_spike(STREAM, 100, ELECTRODE, fs, s + WAVE_SAMPLES // 3,
                                                                u + 1, amps))
                counts["broadcast"] += sj - si
            counts["spike"] += sj - si
            si = sj
            counts["blocks"] += 1
            self.blocks_sent = counts["blocks"]
            send_s += time.perf_counter() - s0
        wall = time.perf_counter() - t0
        if stim_thread is not None:
            stim_thread.join(max(1.0, len(ses.frames) / FPS))
        seconds = n / fs
        self.stats = {**counts, "messages": msg_num, "wall_s": wall, "stream_s": seconds,
                      "x_real_time": seconds / wall if wall > 0 else float("inf"),
                      "generate_s": gen_s, "generate_x_real_time": seconds / gen_s if gen_s > 0 else float("inf"),
                      "send_s": send_s, "late_max_ms": late_max * 1e3, "channels": p.C, "units": p.N,
                      "block_size": B, "data_port": self.data_port, "broadcaster_port": self.broadcaster_port,
                      "stim_endpoint": self.stim_endpoint}
        log.info("virtual probe: %.1f s of %d channels in %.1f s (generation %.1fx real time)", seconds, p.C, wall,
                 self.stats["generate_x_real_time"])
        return self.stats
