"""Numba kernels of the extraction hot path (two-photon and ephys).

Every kernel writes into arrays it is given (no allocation per call), is compiled with `cache=True`
and is exercised by `warm_up_kernels()` so that compilation happens before acquisition starts
(REFERENCES E: a first call costs 330-500 ms even when cached). Each kernel has a NumPy reference
in the stage module that uses it (or in `scipy.signal` for the ephys filter), and
`tests/extract/test_kernels.py` checks that both agree on random inputs.

No `fastmath` (it made gathers slower and would change float results) and no `parallel=True`
(the workqueue layer is not thread-safe): one core per chain.

Timed on this machine (one core, 512x512, 1,000 ROIs; one-off timings, not saved as results),
Numba lost to the library call for: the CSR ROI+neuropil product (scipy), the integer frame shift
(NumPy slices), the crop/mean/taper, and a prefix-sum neuropil scheme. `rtdecode bench extract`
(benchmarks/results/bench_extract.json) times the stages as they are now. Those kernels that remain here but are not the default (`csr_matvec`, `shift_into`)
are kept for comparison and tested; the stages use the faster call.
"""

from __future__ import annotations

import logging
import math

import numba as nb
import numpy as np

log = logging.getLogger(__name__)

_JIT = dict(cache=True, nogil=True, boundscheck=False)


# ------------------------------------------------------------------------------ registration
@nb.njit(**_JIT)
def whiten_multiply(X, ref_spec, eps):
    """X <- X / (|X| + eps) * ref_spec, in place (complex64), in real arithmetic."""
    h, w = X.shape
    for y in range(h):
        for x in range(w):
            v = X[y, x]
            r = ref_spec[y, x]
            re = v.real
            im = v.imag
            inv = np.float32(1.0) / (np.float32(math.sqrt(re * re + im * im)) + eps)
            X[y, x] = complex((re * r.real - im * r.imag) * inv, (re * r.imag + im * r.real) * inv)


@nb.njit(**_JIT)
def bin_into(frame, y0, x0, b, out):
    """out[i, j] = mean of frame[y0 + b*i : y0 + b*(i+1), x0 + b*j : x0 + b*(j+1)] (float32)."""
    gh, gw = out.shape
    if b == 2:  # the default: unrolled, ~3x faster than the general loop (0.05 vs 0.14 ms at 320x320)
        for i in range(gh):
            a = frame[y0 + 2 * i]
            c = frame[y0 + 2 * i + 1]
            row = out[i]
            for j in range(gw):
                x = x0 + 2 * j
                row[j] = (np.float32(a[x]) + np.float32(a[x + 1]) + np.float32(c[x]) + np.float32(c[x + 1])) \
                    * np.float32(0.25)
        return
    scale = np.float32(1.0 / (b * b))
    for i in range(gh):
        row = out[i]
        row[:] = 0
        for k in range(b):
            src = frame[y0 + b * i + k]
            for j in range(gw):
                acc = np.float32(0.0)
                for q in range(b):
                    acc += np.float32(src[x0 + b * j + q])
                row[j] += acc
        for j in range(gw):
            row[j] *= scale


@nb.njit(**_JIT)
def _parab(left, centre, right):
    den = left - 2.0 * centre + right
    if den >= 0.0:
        return 0.0
    off = 0.5 * (left - right) / den
    return min(0.5, max(-0.5, off))


@nb.njit(**_JIT)
def find_peak(cc, m, result):
    """Peak of the correlation map `cc` over shifts -m..m (wrapping), parabolic sub-pixel.

    result[:] = (dy, dx, peak height). Ties go to the first maximum in row-major shift order,
    as np.argmax over the window does.
    """
    ch, cw = cc.shape
    best = -np.inf
    by = 0
    bx = 0
    for iy in range(2 * m + 1):
        ry = (iy - m) % ch
        for ix in range(2 * m + 1):
            v = cc[ry, (ix - m) % cw]
            if v > best:
                best = v
                by = iy
                bx = ix
    ry = (by - m) % ch
    rx = (bx - m) % cw
    c0 = np.float64(cc[ry, rx])
    fy = _parab(np.float64(cc[(ry - 1) % ch, rx]), c0, np.float64(cc[(ry + 1) % ch, rx]))
    fx = _parab(np.float64(cc[ry, (rx - 1) % cw]), c0, np.float64(cc[ry, (rx + 1) % cw]))
    result[0] = by - m + fy
    result[1] = bx - m + fx
    result[2] = c0


@nb.njit(**_JIT)
def shift_into(src, dst, dy, dx):
    """dst[y, x] = src[clip(y - dy), clip(x - dx)] as float32: integer shift, edges repeated."""
    H, W = src.shape
    dx = min(max(dx, -(W - 1)), W - 1)
    x_lo = max(dx, 0)
    x_hi = W + min(dx, 0)
    for y in range(H):
        sy = min(max(y - dy, 0), H - 1)
        srow = src[sy]
        drow = dst[y]
        drow[x_lo:x_hi] = srow[x_lo - dx : x_hi - dx]  # slice copy: vectorised, no index wrapping
        first = drow[x_lo]
        for x in range(x_lo):
            drow[x] = first
        last = drow[x_hi - 1]
        for x in range(x_hi, W):
            drow[x] = last


# ------------------------------------------------------------------------------ ROI traces
@nb.njit(**_JIT)
def csr_matvec(indptr, indices, data, x, out):
    """out[i] = sum_k data[k] * x[indices[k]] over row i (float64 accumulation)."""
    for i in range(indptr.shape[0] - 1):
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        out[i] = acc


@nb.njit(**_JIT)
def combine_traces(F, Fneu, r, out):
    """out = F - r * Fneu (float32), the NumPy reference's order of operations."""
    for i in range(out.shape[0]):
        out[i] = Fneu[i] * (-r) + F[i]


# ------------------------------------------------------------------------------ dF/F
@nb.njit(**_JIT)
def dff_step(inp, b, out, a_down, a_up, min_b):
    """One frame of DeltaF (see dff.DeltaF): returns (rejected non-finite ROIs, baselines clamped).

    A non-finite input gives out = 0 and leaves that ROI's baseline untouched.
    """
    rejected = 0
    low = 0
    for i in range(inp.shape[0]):
        x = inp[i]
        if not math.isfinite(x):
            out[i] = 0.0
            rejected += 1
            continue
        d = x - b[i]
        a = a_down if d < 0 else a_up
        step = a * d
        out[i] = d / b[i]
        nb_ = b[i] + step
        if nb_ < min_b:
            low += 1
            nb_ = min_b
        b[i] = nb_
    return rejected, low


# ------------------------------------------------------------------------------ deconvolution
@nb.njit(**_JIT)
def ar1_innovation(inp, prev, gamma, d):
    """d = inp - gamma * prev; prev <- inp (non-finite inputs: d = 0, prev kept). Returns rejects."""
    rejected = 0
    g = -gamma
    for i in range(inp.shape[0]):
        x = inp[i]
        if not math.isfinite(x):
            d[i] = 0.0
            rejected += 1
            continue
        d[i] = prev[i] * g + x
        prev[i] = x
    return rejected


@nb.njit(**_JIT)
def noise_warm(d, mad, k, mean_to_mad):
    """Warm-up noise tracking after k (float32) innovations: mad <- running mean of |d| * mean_to_mad
    (the median of |d| for Gaussian noise); O(1) per ROI and frame."""
    k1 = k + np.float32(1.0)
    for i in range(d.shape[0]):
        mad[i] = (mad[i] * k + abs(d[i]) * mean_to_mad) / k1


@nb.njit(**_JIT)
def noise_track(d, mad, up, down):
    """Running median of |d|: multiply by `up` where |d| > mad, else by `down`."""
    for i in range(d.shape[0]):
        if abs(d[i]) > mad[i]:
            mad[i] = mad[i] * up
        else:
            mad[i] = mad[i] * down


@nb.njit(**_JIT)
def noise_finish(mad, floor, to_std, sigma):
    for i in range(mad.shape[0]):
        mad[i] = max(mad[i], floor)
        sigma[i] = mad[i] * to_std


@nb.njit(**_JIT)
def threshold_activity(d, sigma, k_sigma, out):
    """out = d where d > k_sigma * sigma else 0, then >= 0."""
    for i in range(d.shape[0]):
        thr = sigma[i] * k_sigma
        v = d[i] if d[i] > thr else np.float32(0.0)
        out[i] = v if v > 0 else np.float32(0.0)


@nb.njit(**_JIT)
def oasis_step(y, t, lag, k_sigma, sigma, gpow, v, w, ln, start, top, m, out):
    """One frame t of online AR(1) OASIS with minimum spike size k_sigma * sigma (see deconv.py).

    Per ROI i a ring of pools (value v, weight w, length ln, first frame start; (n, P) arrays),
    top[i] the newest, m[i] how many are held. A finite y[i] adds a pool (forgetting the oldest if
    P are held); a non-finite one extends the newest pool over an unobserved frame. Then pools
    merge backwards while the newest implies a spike below s_min. out[i] = the spike at frame
    t - lag (the jump at the start of the pool that starts there), else 0.
    gpow: gamma ** k table (float64), read at min(k, len - 1).
    """
    n = y.shape[0]
    P = v.shape[1]
    K = gpow.shape[0]
    u = t - lag
    for i in range(n):
        x = y[i]
        tp = top[i]
        if math.isfinite(x) or m[i] == 0:
            if m[i] == P:
                m[i] -= 1
            tp = (tp + 1) % P
            if math.isfinite(x):
                v[i, tp] = x
                w[i, tp] = 1.0
            else:
                v[i, tp] = 0.0
                w[i, tp] = 0.0
            ln[i, tp] = 1
            start[i, tp] = t
            m[i] += 1
        else:
            ln[i, tp] += 1
        smin = k_sigma * np.float64(sigma[i])
        while m[i] > 1:
            j = (tp - 1) % P
            f = gpow[min(ln[i, j], K - 1)]
            if v[i, j] * f + smin > v[i, tp]:
                z = w[i, j] + w[i, tp] * f * f
                v[i, j] = (v[i, j] * w[i, j] + v[i, tp] * w[i, tp] * f) / z
                w[i, j] = z
                ln[i, j] += ln[i, tp]
                tp = j
                m[i] -= 1
            else:
                break
        top[i] = tp
        out[i] = 0.0
        if u >= 0:
            k = tp
            q = 0
            while start[i, k] > u:  # at most lag pools start after frame u
                k = (k - 1) % P
                q += 1
            if start[i, k] == u and q + 1 < m[i]:
                j = (k - 1) % P
                s = max(v[i, k], 0.0) - max(v[i, j], 0.0) * gpow[min(ln[i, j], K - 1)]
                if s > 0.0:
                    out[i] = s


# ------------------------------------------------------------------------------ ephys
@nb.njit(**_JIT)
def sos_filter_chunk(x, scale, sos, zi, y):
    """Cascaded biquads (transposed direct form II, scipy.signal.sosfilt), state zi kept.

    x: (T, C) int16 or float samples (time-major, as Open Ephys streams them); scale: multiplies
    x (e.g. bit_volts); sos: (S, 6) float64; zi: (S, 2, C) float64 state, updated in place;
    y: (T, C) float32 output.

    Layout: for each sample, one pass over the channels per section (channel-contiguous, so the
    channel loop vectorises). The state is copied into an array local to the call for the chunk:
    then LLVM knows it aliases neither the row buffer nor the output and vectorises the channel
    loop (faster than updating views of `zi` in place at 384 channels in a one-off timing, not
    saved; identical results).
    The two small arrays (S*2*C + C float64) are allocated once per chunk, not per sample.
    """
    T, C = x.shape
    S = sos.shape[0]
    z = np.empty((S, 2, C), np.float64)
    z[:] = zi
    buf = np.empty(C, np.float64)  # one channel row
    for t in range(T):
        for c in range(C):
            buf[c] = x[t, c] * scale
        for s in range(S):
            b0 = sos[s, 0]
            b1 = sos[s, 1]
            b2 = sos[s, 2]
            a1 = sos[s, 4]
            a2 = sos[s, 5]
            for c in range(C):
                xi = buf[c]
                yi = b0 * xi + z[s, 0, c]
                z[s, 0, c] = b1 * xi - a1 * yi + z[s, 1, c]
                z[s, 1, c] = b2 * xi - a2 * yi
                buf[c] = yi
        for c in range(C):
            y[t, c] = buf[c]
    zi[:] = z


@nb.njit(**_JIT)
def common_average(y):
    """Subtract each sample's mean over channels, in place (4 partial sums: faster than one serial
    float64 sum in a one-off timing, not saved)."""
    T, C = y.shape
    for t in range(T):
        row = y[t]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        c = 0
        while c + 4 <= C:
            a0 += row[c]
            a1 += row[c + 1]
            a2 += row[c + 2]
            a3 += row[c + 3]
            c += 4
        while c < C:
            a0 += row[c]
            c += 1
        m = np.float32(((a0 + a1) + (a2 + a3)) / C)
        for c in range(C):
            row[c] -= m


@nb.njit(**_JIT)
def common_median(y, scratch):
    """Subtract each sample's median over channels, in place (scratch: (C,) float32)."""
    T, C = y.shape
    for t in range(T):
        for c in range(C):
            scratch[c] = y[t, c]
        scratch.sort()
        if C % 2 == 1:
            m = scratch[C // 2]
        else:
            m = np.float32(0.5) * (scratch[C // 2 - 1] + scratch[C // 2])
        for c in range(C):
            y[t, c] -= m


@nb.njit(**_JIT)
def detect_crossings(y, thr, prev, last, refractory, t0, out_t, out_c):
    """Negative threshold crossings: y[t, c] < -thr[c] <= y[t-1, c], at least `refractory` samples
    after the channel's previous event. prev (C,) float32: last sample of the previous chunk
    (state); last (C,) int64: sample number of each channel's last event (state); t0: sample
    number of y[0]. Writes events to out_t / out_c; returns how many (stops when they are full)."""
    T, C = y.shape
    k = 0
    cap = out_t.shape[0]
    for t in range(T):
        for c in range(C):
            v = y[t, c]
            lvl = -thr[c]
            if v < lvl and prev[c] >= lvl and (t0 + t) - last[c] >= refractory:
                if k < cap:
                    out_t[k] = t0 + t
                    out_c[k] = c
                    k += 1
                last[c] = t0 + t
            prev[c] = v
    return k


@nb.njit(**_JIT)
def bin_events(ev_t, ev_c, n_events, edges, counts):
    """counts[b, c] += events with edges[b] <= t < edges[b+1] (edges sorted, sample numbers)."""
    nb_ = edges.shape[0] - 1
    for k in range(n_events):
        t = ev_t[k]
        if t < edges[0] or t >= edges[nb_]:
            continue
        lo = 0
        hi = nb_
        while hi - lo > 1:  # binary search: edges[lo] <= t < edges[hi]
            mid = (lo + hi) // 2
            if edges[mid] <= t:
                lo = mid
            else:
                hi = mid
        counts[lo, ev_c[k]] += 1


# ------------------------------------------------------------------------------ warm-up
_warmed = False


def warm_up_kernels() -> float:
    """Compile (or load from cache) every kernel with the dtypes the stages use; returns seconds."""
    global _warmed
    import time

    t = time.perf_counter()
    f32, u16 = np.float32, np.uint16
    fr = np.ones((16, 16), u16)
    X = np.ones((8, 5), np.complex64)
    whiten_multiply(X, X.copy(), f32(1e-5))
    res = np.empty(3)
    find_peak(np.ones((8, 8), f32), 2, res)
    find_peak(np.ones((8, 8), np.float64), 2, res)
    out = np.empty((16, 16), f32)
    shift_into(fr, out, 1, -1)
    shift_into(out.copy(), out, 1, -1)
    g = np.empty((4, 4), f32)
    bin_into(fr, 2, 2, 2, g)
    bin_into(fr.view(np.int16), 2, 2, 2, g)
    x = np.ones(256, f32)
    o = np.empty(2, f32)
    csr_matvec(np.array([0, 1, 2], np.int32), np.array([0, 1], np.int32), np.ones(2, f32), x, o)
    csr_matvec(np.array([0, 1, 2], np.int64), np.array([0, 1], np.int64), np.ones(2, f32), x, o)
    combine_traces(o, o.copy(), f32(0.7), o.copy())
    b = np.ones(2, f32)
    dff_step(o, b, o.copy(), f32(0.1), f32(0.01), f32(1.0))
    d = np.empty(2, f32)
    ar1_innovation(o, o.copy(), f32(0.9), d)
    noise_warm(d, o.copy(), f32(1.0), f32(0.8453))
    P = 4
    i64 = np.int64
    oasis_step(o, 1, 2, 2.0, o, 0.9 ** np.arange(8.0), np.zeros((2, P)), np.zeros((2, P)),
               np.zeros((2, P), i64), np.zeros((2, P), i64), np.zeros(2, i64), np.zeros(2, i64), o.copy())
    noise_track(d, o.copy(), f32(1.01), f32(0.99))
    noise_finish(o.copy(), f32(1e-6), f32(1.48), o.copy())
    threshold_activity(d, o, f32(2.0), o.copy())
    sos = np.array([[1.0, 0, 0, 1.0, 0, 0]])
    yy = np.empty((4, 3), f32)
    sos_filter_chunk(np.ones((4, 3), np.int16), 1.0, sos, np.zeros((1, 2, 3)), yy)
    sos_filter_chunk(np.ones((4, 3), f32), 1.0, sos, np.zeros((1, 2, 3)), yy)
    common_average(yy)
    common_median(yy, np.empty(3, f32))
    et = np.empty(8, np.int64)
    ec = np.empty(8, np.int64)
    n = detect_crossings(yy, np.ones(3, f32), np.zeros(3, f32), np.full(3, -10**9, np.int64), 10, 0, et, ec)
    bin_events(et, ec, n, np.array([0, 2, 4], np.int64), np.zeros((2, 3), np.int64))
    bin_events(et, ec, n, np.array([0, 2, 4], np.int64), np.zeros((2, 3), np.int32))
    _warmed = True
    dt = time.perf_counter() - t
    log.debug("numba kernels ready in %.3f s", dt)
    return dt
