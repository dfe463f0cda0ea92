"""The clock-offset estimate (rtdecode/sources/clock.py) against issue 27's time attacks, message by
message: a backlog longer than any window never becomes offset, a `t` from the future is one
rejected message, clock steps restart the estimate after `confirm` messages, and drift is followed.
(The same attacks on loopback sockets through a live session: tests/live/test_time_attacks.py.)"""

import pytest

from rtdecode.sources.clock import ClockOffset

OFFSET = 0.5  # the sender's clock is 0.5 s behind ours; bare transport 0


def _feed(c, t0, t1, rate=30.0, delay=0.0, queued=False, step=0.0):
    """Messages sent at rate/s from t0 to t1 (true time), received `delay` later; the sender's clock
    is `step` s off its usual; returns the excesses."""
    out, t = [], t0
    while t < t1:
        out.append(c.see(t - OFFSET + step, t + delay, queued=queued))
        t += 1 / rate
    return out


def test_a_backlog_longer_than_the_window_is_never_taken_for_offset():
    c = ClockOffset(window_s=10.0)
    _feed(c, 0, 5)
    ex = _feed(c, 5, 125, delay=1.3, queued=True)  # 2 minutes queued 1.3 s deep
    assert all(e is not None for e in ex)
    assert min(ex) > 1.28  # every frame is seen 1.3 s old (less at most 12 ms of allowed drift)
    assert abs(c.min_delay - OFFSET) < 0.013 and c.steps == 0


def test_one_future_timestamp_is_one_rejected_message():
    c = ClockOffset()
    _feed(c, 0, 5)
    assert c.see(5.0 + 1e6, 5.0) is None  # t = now + 1e6 s
    ex = _feed(c, 5.04, 10)
    assert all(e is not None and e < 1e-3 for e in ex)
    assert c.rejected == 1 and c.steps == 0 and abs(c.min_delay - OFFSET) < 1e-9


def test_clock_steps_back_and_forward_restart_the_estimate_after_three_messages():
    c = ClockOffset()
    _feed(c, 0, 5)
    back = _feed(c, 5, 10, step=-3600.0)
    assert back[:2] == [None, None] and all(e is not None and e < 1e-3 for e in back[2:])
    assert c.steps == 1 and abs(c.min_delay - (OFFSET + 3600.0)) < 1e-6
    forward = _feed(c, 10, 15)
    assert forward[:2] == [None, None] and all(e is not None and e < 1e-3 for e in forward[2:])
    assert c.steps == 2 and c.rejected == 4 and abs(c.min_delay - OFFSET) < 1e-6
    assert c.local(20.0 - OFFSET) == 20.0  # on this PC's clock again


def test_a_small_step_back_is_queueing_until_a_window_of_unqueued_messages_says_otherwise():
    c = ClockOffset(window_s=10.0)
    _feed(c, 0, 5)
    # 40 ms back at 30 Hz: `t` goes back by only 7 ms, within a jump: it looks like queueing
    ex = _feed(c, 5 + 1 / 30, 12, step=-0.04, queued=True)
    assert min(ex) > 0.035 and c.steps == 0  # queued messages never move the floor up
    ex = _feed(c, 12, 24, step=-0.04)  # a whole window unqueued and above the floor: re-anchored
    assert c.steps == 1 and ex[-1] < 1e-3 and c.rejected == 0


def test_drift_is_followed_within_max_drift():
    c = ClockOffset(max_drift=1e-4)
    t, worst = 0.0, 0.0
    while t < 600:  # the sender's clock runs 50 ppm slow: the delay grows 30 ms in 10 minutes
        e = c.see(t - OFFSET - 5e-5 * t, t)
        worst = max(worst, e)
        t += 1 / 30
    assert worst < 1e-4 and c.steps == 0 and c.rejected == 0


def test_creep_is_how_far_the_estimate_rose_since_the_floor_was_seen():
    c = ClockOffset(max_drift=1e-4)
    assert c.creep() == 0.0
    c.see(100.0, 100.001)  # floor 1 ms
    assert c.creep() == 0.0
    c.see(110.0, 110.5, queued=True)  # a backlog: 0.5 s late, 10 s after the floor was reached
    assert c.creep() == pytest.approx(1e-4 * (110.5 - 100.001))  # 100 ppm of the 10.5 s since
    assert c.min_delay == pytest.approx(0.001 + c.creep())
