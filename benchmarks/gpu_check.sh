#!/usr/bin/env bash
# On a machine with a CUDA GPU: the whole suite (unit tests and every notebook under nbval) with
# the GPU visible, as a student with a GPU would run it, then the GPU benchmark of the training loop.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]       (PYTHON=... to choose the interpreter; JOBS=8)
#
# Left out: the grading, lab, website and browser tests (nbgrader, JupyterLab, chromium: no device).
# Results go to OUTDIR (default gpu_check/): device.txt, suite.log, bench.log.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${1:-gpu_check}
mkdir -p "$out"
export PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
"$py" - <<'PY' | tee "$out/device.txt" || exit 2
import platform, torch
assert torch.cuda.is_available(), "no CUDA device visible"
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"Python {platform.python_version()}")
PY
"$py" -m pytest -n "${JOBS:-8}" -q --ignore-glob='tests/test_grading*' \
    --ignore-glob='tests/test_browser*' --ignore=tests/test_book.py --ignore=tests/test_lab.py -rf 2>&1 | tee "$out/suite.log"
status=${PIPESTATUS[0]}
for args in "" "--fused" "--fused --host-check"; do
    "$py" benchmarks/bench_train.py --device cuda --repeats 7 $args
done 2>&1 | tee "$out/bench.log"
exit "$status"
