#!/usr/bin/env bash
# Run HERE (a machine with PyPI) before bench/gpu_check.sh runs on a GPU machine that
# has Python 3.12, JAX and PyTorch but no network, TensorFlow or Keras: fetch what
# trainrun and Keras import as Python 3.12 wheels into .whl/, and the full MNIST into
# .data/ (both git-excluded). Then run bench/gpu_check.sh there with both carried.
#
#   bash bench/gpu_wheels.sh /path/to/folder/with/mnist.npz
set -euo pipefail
cd "$(dirname "$0")/.."
mnist="${1:?give the folder holding the full mnist.npz}"
exclude="$(git rev-parse --git-path info/exclude)"; mkdir -p "$(dirname "$exclude")"
for p in /.whl/ /.data/ /gpu-out/; do grep -qx "$p" "$exclude" 2>/dev/null || echo "$p" >> "$exclude"; done
core=$(python3 -c "import importlib.metadata as m; print(m.version('pydantic_core'))")
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  keras==3.15.1 namex optree h5py absl-py pyyaml typer click rich shellingham annotated-doc \
  markdown-it-py mdurl pygments pydantic "pydantic-core==$core" typing-inspection \
  annotated-types typing-extensions packaging matplotlib contourpy cycler fonttools kiwisolver \
  pillow pyparsing python-dateutil six
mkdir -p .data && cp "$mnist/mnist.npz" .data/
du -sh .whl .data
