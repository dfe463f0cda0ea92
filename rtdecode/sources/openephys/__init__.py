"""Open Ephys GUI acquisition side, in the GUI's own protocols (REFERENCES C, docs/design.md 3.4).

- `zmq_interface`: client of the ZMQ Interface plugin (continuous data, TTL events, spikes).
- `zmq_interface_wire`: that plugin's wire format (message types, encoders, `parse_message`).
- `event_broadcaster`: client of the Event Broadcaster plugin (JSON mode).
- `bins`: the bin grid (sample numbers of time bin k) of the ephys live path.
- `continuous`: ZMQ Interface continuous data -> blocks of samples cut at bin edges (gaps, restarts,
  dropped bins); the extraction runs on them as stages (rtdecode.extract.ephys_stages).
- `sorted_spikes`: Event Broadcaster spikes -> the spikes of each completed bin, per electrode / unit.
- `network_events`: trigger sink / remote control through the Network Events plugin.
- `recording`: reader of an Open Ephys Binary recording folder (`structure.oebin`).
- `emulator`: replays a Binary recording in the ZMQ Interface and Event Broadcaster protocols
  (CLI wrapper: `drivers/openephys/emulator.py`).

Nothing here needs anything installed in the GUI beyond its standard plugins.
"""

from rtdecode.errors import WireError


class OpenEphysProtocolError(WireError):
    """A message does not follow the Open Ephys plugin protocol it claims to come from."""
