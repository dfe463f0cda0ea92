"""Thin CLI wrapper of rtdecode.sources.openephys.emulator (the code lives in the package so tests import it).

    python drivers/openephys/emulator.py "/path/to/Record Node 105" --data-port 5556 --broadcaster-port 5558 --speed 1
"""

from rtdecode.sources.openephys.emulator import main

if __name__ == "__main__":
    raise SystemExit(main())
