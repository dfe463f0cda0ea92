"""Traces, DeltaF and Deconvolve on inputs with known answers; the chain's input checks."""

import numpy as np
import pytest

from rtdecode.errors import StageError
from rtdecode.extract import build_chain, default_spec, extract_movie
from rtdecode.extract.deconv import Deconvolve, estimate_noise, gamma_of
from rtdecode.extract.dff import DeltaF
from rtdecode.extract.rois import from_footprints
from rtdecode.extract.traces import Traces

SHAPE = (64, 64)


def rois():
    ys, xs, ws = [], [], []
    for cy, cx in [(20, 20), (40, 44)]:
        y, x = np.mgrid[cy - 3 : cy + 4, cx - 3 : cx + 4]
        ys.append(y.ravel())
        xs.append(x.ravel())
        ws.append(np.linspace(1, 2, y.size))
    return from_footprints(ys, xs, ws, SHAPE)


def test_traces_are_weighted_means_minus_r_neuropil():
    r = rois()
    frame = np.random.default_rng(0).uniform(0, 1000, SHAPE).astype(np.float32)
    stage = Traces(r, r=0.5)
    out = stage.out_spec.empty()
    stage.process(frame, out)
    for i in range(2):
        fp = r.footprints[[i], :]
        np.testing.assert_allclose(stage.F[i], fp.data @ frame.ravel()[fp.indices], rtol=1e-5)
        npx = r.neuropil[[i], :].indices
        np.testing.assert_allclose(stage.Fneu[i], frame.ravel()[npx].mean(), rtol=1e-5)
    np.testing.assert_allclose(out, stage.F - 0.5 * stage.Fneu, rtol=1e-5)


def test_dff_is_zero_on_a_constant_and_positive_on_a_transient():
    st = DeltaF(3, fps=30.0)
    out = st.out_spec.empty()
    x = np.array([100, 200, 300], np.float32)
    for _ in range(50):
        st.process(x, out)
    np.testing.assert_allclose(out, 0, atol=1e-6)
    st.process(x * 1.5, out)
    np.testing.assert_allclose(out, 0.5, rtol=1e-4)
    for _ in range(30):  # a 1 s transient barely moves the slow-rising baseline
        st.process(x * 1.5, out)
    assert np.all(st.baseline < x * 1.02)
    st.process(x * 0.5, out)  # a fall is followed quickly
    for _ in range(300):
        st.process(x * 0.5, out)
    np.testing.assert_allclose(st.baseline, x * 0.5, rtol=1e-2)


def test_dff_baseline_guards():
    with pytest.raises(StageError, match="baseline must be > 0"):
        DeltaF(3, baseline=np.array([1.0, 0.0, 2.0]))
    with pytest.raises(StageError, match="shape"):
        DeltaF(3, baseline=np.ones(4))
    st = DeltaF(2, min_baseline=1.0, baseline=np.array([50.0, 50.0]))
    out = st.out_spec.empty()
    for _ in range(200):  # F falls below 0 (over-subtracted neuropil): clamped, not a crash
        st.process(np.array([-10.0, 50.0], np.float32), out)
    assert np.all(np.isfinite(out)) and st.baseline[0] == 1.0
    st.reset()
    st.process(np.array([7.0, 9.0], np.float32), out)  # reset restarts from the given baseline
    np.testing.assert_allclose(st.baseline[1] > 49, True)


def ar1_traces(n=20, T=3000, fps=30.0, tau=0.7, sd=0.05, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.poisson(1.0 / fps, (n, T)).astype(np.float32)
    g = gamma_of(tau, fps)
    c = np.zeros((n, T), np.float32)
    for t in range(T):
        c[:, t] = (g * c[:, t - 1] if t else 0) + s[:, t]
    return s, c + rng.normal(0, sd, (n, T)).astype(np.float32)


@pytest.mark.parametrize("fixed", [False, True])
def test_deconvolve_finds_the_spikes(fixed):
    s, y = ar1_traces()
    noise = estimate_noise(y) if fixed else None
    st = Deconvolve(20, k_sigma=3.0, noise=noise)
    out = st.out_spec.empty()
    act = np.empty_like(y)
    for t in range(y.shape[1]):
        st.process(y[:, t], out)
        act[:, t] = out
    assert act.min() >= 0
    hits = (act > 0) & (s > 0)
    assert hits.sum() / (s > 0).sum() > 0.95  # spikes of size 1 against noise 0.05 * sqrt(1 + g^2)
    assert ((act > 0) & (s == 0)).sum() / (s == 0).sum() < 0.01
    np.testing.assert_allclose(st.sigma, 0.05 * np.sqrt(1 + gamma_of(0.7, 30.0) ** 2), rtol=0.15)


def test_chain_rejects_wrong_frames():
    chain = build_chain(default_spec(crop=(32, 32)), rois(), np.ones(SHAPE, np.float32) * 100)
    chain.warm_up()
    assert chain.process(np.full(SHAPE, 100, np.uint16)).shape == (2,)
    with pytest.raises(StageError, match="expected <u2"):
        chain.process(np.zeros(SHAPE, np.float32))
    with pytest.raises(StageError, match=r"\(64, 64\)"):
        chain.process(np.zeros((64, 65), np.uint16))
    with pytest.raises(StageError, match="reference is"):
        build_chain(None, rois(), np.ones((32, 32)))
    with pytest.raises(StageError):
        extract_movie(chain, np.zeros((3, 32, 32), np.uint16))


@pytest.mark.parametrize("lag", [0, 3])
def test_oasis_finds_the_spikes_lag_frames_late(lag):
    s, y = ar1_traces(seed=1)
    st = Deconvolve(20, k_sigma=3.0, method="oasis", lag=lag)
    out = st.out_spec.empty()
    act = np.zeros_like(y)
    for t in range(y.shape[1]):
        st.process(y[:, t], out)
        if t >= lag:
            act[:, t - lag] = out  # the output of frame t is the activity of frame t - lag
    s, act = s[:, 30:-lag or None], act[:, 30:-lag or None]  # past the noise warm-up
    assert act.min() >= 0
    assert ((act > 0) & (s > 0)).sum() / (s > 0).sum() > 0.95
    assert ((act > 0) & (s == 0)).sum() / (s == 0).sum() < 0.01
    hit = (act > 0) & (s > 0)
    np.testing.assert_allclose(np.median(act[hit] / s[hit]), 1, atol=0.1)  # spike sizes, not just times
