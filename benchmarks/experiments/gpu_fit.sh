#!/usr/bin/env bash
# One call on a lent GPU machine (the device tool; see benchmarks/README.md): the GPU tests, then
# the decoder table's seed-0 fit at 4,000 neurons (`fit --method amortized`, defaults) on the GPU,
# timed, and its held-out score; then, while time is left, a longer encoder to see whether its
# validation correlation still rises past the 1,000 default steps.
#   OUT=dir [NEURONS=4000 TRAIN=60 TEST=10 DEVICE=cuda DEFAULT_FIT=1 ENC_STEPS=4000 ENC_TIMEOUT=150
#            ENC2_STEPS=0 WARM_TIMEOUT=150] bash gpu_fit.sh
# Wheels of the packages the GPU image lacks (pydantic, pyzmq) travel in .whl/ when present.
set -uo pipefail
OUT=${OUT:?set OUT to a folder for the results}
NEURONS=${NEURONS:-4000} TRAIN=${TRAIN:-60} TEST=${TEST:-10} DEVICE=${DEVICE:-cuda}
ENC_STEPS=${ENC_STEPS:-4000} ENC_TIMEOUT=${ENC_TIMEOUT:-150}
PY=${PY:-python3}
WORK=${WORK:-/tmp/gpu_fit}
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)"
  nproc; } > "$OUT/machine.txt"

[ "$DEVICE" = cuda ] && timeout 180 $PY -m pytest -q -p no:cacheprovider -m gpu -o addopts="" \
  tests/backends/test_torch_cuda.py tests/decode/test_distributed.py 2>&1 | tail -15 > "$OUT/pytest_gpu.log"

D=$WORK/data
t0=$(date +%s.%N)
$PY -m rtdecode simulate --out "$D" --neurons "$NEURONS" --train-trials "$TRAIN" --test-trials "$TEST" --seed 0 \
  2>/dev/null || exit 1
t1=$(date +%s.%N)
if [ "${DEFAULT_FIT:-1}" = 1 ]; then
$PY -m rtdecode fit "$D" --out "$WORK/model" --method amortized --device "$DEVICE" 2> "$WORK/fit.err" || {
  tail -30 "$WORK/fit.err" > "$OUT/fit_error.log"; exit 1; }
t2=$(date +%s.%N)
cp "$WORK/model/card.json" "$OUT/card.json"
$PY -m rtdecode reconstruct "$WORK/model" "$D" --out "$WORK/rec" > "$OUT/reconstruct.json" 2>/dev/null
t3=$(date +%s.%N)
$PY -c "import json,sys; t=[float(v) for v in sys.argv[1:]]; print(json.dumps({'simulate_s': t[1]-t[0], \
  'fit_s': t[2]-t[1], 'reconstruct_s': t[3]-t[2]}))" "$t0" "$t1" "$t2" "$t3" > "$OUT/times.json"
fi

# the same fit with a longer encoder (ENC2_STEPS > 0), its warm reconstruction, its weights
if [ "${ENC2_STEPS:-0}" -gt 0 ]; then
  t4=$(date +%s.%N)
  $PY -m rtdecode fit "$D" --out "$WORK/model2" --method amortized --device "$DEVICE" --encoder-steps "$ENC2_STEPS" \
    2> "$WORK/fit2.err" && cp "$WORK/model2/card.json" "$OUT/card_enc$ENC2_STEPS.json"
  t5=$(date +%s.%N)
  echo "fit with $ENC2_STEPS encoder steps: $($PY -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t4" "$t5") s" \
    >> "$OUT/machine.txt"
  timeout "${WARM_TIMEOUT:-150}" $PY -m rtdecode reconstruct "$WORK/model2" "$D" --out "$WORK/rec2" --method warm \
    > "$OUT/reconstruct_warm_enc$ENC2_STEPS.json" 2>/dev/null
  [ "$(stat -c %s "$WORK/model2/weights.npz")" -lt 16000000 ] && cp "$WORK/model2/weights.npz" "$OUT/weights_enc$ENC2_STEPS.npz"
fi

# a longer encoder alone (the inverse method: encoder only), stopped by the clock if need be
if [ "$ENC_STEPS" -gt 0 ]; then
  timeout "$ENC_TIMEOUT" $PY -m rtdecode fit "$D" --out "$WORK/enc" --method inverse --device "$DEVICE" \
    --encoder-steps "$ENC_STEPS" 2> "$WORK/enc.err" && cp "$WORK/enc/card.json" "$OUT/card_encoder.json"
  echo "encoder run exit $?" >> "$OUT/machine.txt"
fi
exit 0
