"""rtdecode's tests, one folder per package folder (tests/live tests rtdecode/live, ...). Every folder is a
package so that two folders may each hold a test module of the same plain name (tests/bench/test_cli.py,
tests/decode/test_cli.py). At the top: the tests of top-level modules (test_metrics.py, test_latency.py)
and the project-wide checks (test_layout.py: the import layers; test_docs_commands.py: every command
in the docs; test_rehearsal.py: the README's rehearsal block; test_registries.py: the registries the
command line and the rig file share)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository
