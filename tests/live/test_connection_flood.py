"""Issue 27, class 3: idle connections and connect/disconnect churn on the ports rtdecode publishes
on (the decoded stream and a zmq trigger) never stop the recording, never fire a stale trigger and
leave the process as it was once they go; a publish address beyond loopback is warned about at start.

The flood peers complete the ZMTP handshake as SUBs subscribed to everything and never read
(rtdecode.bench.hostile_flood.zmtp_peer), on real loopback sockets."""

import json
import logging
import os
import re
import time

import numpy as np
import zmq

from rtdecode import cli
from rtdecode.bench import hostile
from rtdecode.bench.hostile_flood import Flood, open_fds, run_flood, zmtp_peer
from rtdecode.outputs.publish import Publisher


def test_a_flood_that_uses_up_the_descriptors_never_stops_the_recording_for_good():
    # a 256-descriptor process: the refused connections alone use them up for seconds, so the
    # recorder meets EMFILE; it must retry, and every processed frame must be on disk or counted
    r = run_flood(connections=400, flood_s=4.0, side=128, n_rois=30, nofile=256)
    assert r["exit_code"] == 0 and not r["traceback"], r["stderr_tail"]
    assert r["fds_peak"] >= 250, "the flood did not reach the descriptor limit: the attack did not happen"
    assert r["stale_fired"] == 0
    assert r["uncounted_lost"] == 0
    assert r["records_lost"] == 0 and r["status"] == "stopped", r["damaged"]
    assert r["frames_recorded"] == r["frames_sent"]
    assert r["fired_after_flood"] > 0 and r["recovery_s"] is not None
    assert r["fds_after"] <= r["fds_before"] + 4
    peers = r["peers"]
    assert peers["decoded"]["refused"] > 0 and peers["trigger every"]["refused"] > 0
    assert peers["decoded"]["peers"] <= peers["decoded"]["limit"]


def test_a_subscriber_connected_before_a_flood_keeps_receiving_and_the_flood_leaves_nothing_behind():
    port = hostile._free_port()
    pub = Publisher(f"tcp://127.0.0.1:{port}", max_peers=4, what="the decoded stream")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(f"tcp://127.0.0.1:{port}")
    flood = Flood([port])
    try:
        deadline = time.time() + 30
        while not sub.poll(10) and time.time() < deadline:  # the slow-joiner: until the first message arrives
            pub.send("decoded", np.zeros(4, np.float32))
        while sub.poll(10):
            sub.recv_multipart()
        fds0 = open_fds(os.getpid())
        flood.open(200)
        assert flood.refused > 0 and flood.accepted <= 4
        for i in range(20):
            pub.send("decoded", np.full(4, i, np.float32))
        got = []
        while sub.poll(2000):
            got.append(np.frombuffer(sub.recv_multipart()[2], np.float32)[0])
            if got[-1] == 19:
                break
        assert got == list(range(20))
        flood.close()
        deadline = time.time() + 30  # refused connections are closed by ZeroMQ's handshake timer
        while open_fds(os.getpid()) > fds0 + 2 and time.time() < deadline:
            time.sleep(0.2)
        assert open_fds(os.getpid()) <= fds0 + 2
        assert pub.peers()["refused"] > 0
    finally:
        flood.close()
        sub.close()
        pub.close()


def test_a_refused_peer_gets_an_error_not_a_stream():
    port = hostile._free_port()
    pub = Publisher(f"tcp://127.0.0.1:{port}", max_peers=1)
    try:
        a, ok_a = zmtp_peer(port)
        # the guard counts peers from the socket monitor's events, which arrive asynchronously
        deadline = time.monotonic() + 5
        while pub.peers()["peers"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        b, ok_b = zmtp_peer(port)
        assert ok_a and not ok_b
        a.close()
        b.close()
    finally:
        pub.close()


def test_publish_addresses_beyond_loopback_are_warned_about_at_start(tmp_path, caplog):
    rig, _ = hostile._rig(tmp_path, "rtframe", hostile._free_port())
    pport, tport = hostile._free_port(), hostile._free_port()
    text = re.sub(r'publish: "[^"]*"', f'publish: "tcp://0.0.0.0:{pport}"', rig.read_text())
    text += (f'triggers: [{{name: t, kind: zmq, address: "tcp://*:{tport}", '
             f'rule: {{kind: luminance, threshold: 0}}}}]\n')
    rig.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert cli.main(["run", str(rig), "--record", str(tmp_path / "s"), "--seconds", "1"]) == 0
    warned = [r.getMessage() for r in caplog.records if "beyond loopback" in r.getMessage()]
    assert any(f":{pport}" in m and "decoded stream" in m for m in warned), warned
    assert any(f":{tport}" in m and "trigger 't'" in m for m in warned), warned
    assert json.loads((tmp_path / "s" / "end.json").read_text())["ended_by"] == "stop"
