#!/usr/bin/env bash
# The GPU checks of the backend issue, as one prepared command for the device machine
# (see bench/gpu_wheels.sh): what the device has, the JAX bench against plain Keras
# (defaults, and steps_per_execution=100) with the hand-written floor, exact resume
# after kill -9 on the GPU, and torch's bench. Results go to $OUT (or ./gpu-out).
#
#   timeout 580 bash bench/gpu_check.sh [--full]   # about 8 minutes; --full: 3 repeats
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" TRAINRUN_DATA_DIR="$PWD/.data" TF_CPP_MIN_LOG_LEVEL=2
export TRAINRUN_JAX_CACHE=/tmp/jax-cache
repeats=1; [ "${1:-}" = "--full" ] && repeats=3
{
  nvidia-smi -L; python3 --version
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
} 2>&1 | tee "$out/device.txt"
step() { echo "== $1"; shift; timeout 240 "$@" 2>&1 | tail -60; }
{
  step "jax bench (plain Keras: defaults)" \
    python3 bench/bench.py --backend jax --repeats "$repeats" --workloads mlp,cnn --long-epochs 0
  step "jax bench (plain Keras: steps_per_execution=100)" \
    python3 bench/bench.py --backend jax --repeats 1 --workloads mlp --long-epochs 0 \
    --keras-steps-per-execution 100
  step "jax: kill -9 at a random instant, resume, compare (seed 1)" \
    python3 bench/kill_resume.py --backend jax --seed 1
  step "jax: kill -9 at a random instant, resume, compare (seed 2)" \
    python3 bench/kill_resume.py --backend jax --seed 2
  step "torch bench" \
    python3 bench/bench.py --backend torch --repeats 1 --workloads mlp --long-epochs 0
  step "torch: kill -9, resume, compare" python3 bench/kill_resume.py --backend torch --seed 1
} 2>&1 | tee "$out/checks.txt"
