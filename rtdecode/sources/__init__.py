"""Sources: everything that arrives from outside, parsed before anything else touches it.

The rtframe wire format (`wire`), the SUB sockets and their counters (`ingest`), ScanImage
(`scanimage`), the Open Ephys GUI's own protocols (`openephys/`), the stimulus PC (`stimulus`),
the source probe (`probe`), the protocol registry (`protocols`) and the
address parser (`address`). Imports nothing of rtdecode but `errors`.
"""
