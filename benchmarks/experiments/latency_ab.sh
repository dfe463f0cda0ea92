#!/bin/bash
# Interleaved e2e runs: before this session's latency work (f5ae893) and after (main), on the same machine.
. /work/main/.venv/bin/activate
out=/work/main/benchmarks/results/latency_ab_27
mkdir -p $out
for rep in 1 2; do
  (cd /work/wt-old && PYTHONPATH=/work/wt-old python -m rtdecode bench e2e --json $out/before_f5ae893_$rep.json --seconds 40 --step-seconds 1 2>&1 | grep -E "^30 Hz: acq"; uptime)
  (cd /work/main && PYTHONPATH=/work/main python -m rtdecode bench e2e --json $out/after_default_$rep.json --seconds 40 --step-seconds 1 2>&1 | grep -E "^30 Hz: acq"; uptime)
  (cd /work/main && PYTHONPATH=/work/main python -m rtdecode bench e2e --json $out/after_priority50_$rep.json --seconds 40 --step-seconds 1 --priority 50 2>&1 | grep -E "^30 Hz: acq"; uptime)
done
