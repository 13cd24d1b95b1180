#!/usr/bin/env bash
# Prepares .devdata/, what benchmarks/gpu_session.sh needs on a lent GPU machine that this
# repository cannot assume there (it reaches no network and has no Debian packages of ours):
#   fashion-mnist/  the four IDX files of Debian's dataset-fashion-mnist (30 MB)
#   fonts/          NotoColorEmoji.ttf of fonts-noto-color-emoji (the emoji data and its tests)
#   wheels/         the pure-Python and manylinux wheels for Python 3.12 that its image lacks
#   cache/          the Fashion-MNIST domain feature network trained here, so FIDs there compare
#                   with this machine's (GANKIT_CACHE)
# .devdata/ is ignored through .git/info/exclude (local), so nothing of it is committed. Then, from
# a session with a device: run(command="bash benchmarks/gpu_session.sh", carry=[".devdata"]).
set -euo pipefail
cd "$(dirname "$0")/.."
D=.devdata
grep -qxF "/$D/" .git/info/exclude 2>/dev/null || echo "/$D/" >> .git/info/exclude
mkdir -p $D/fashion-mnist $D/fonts $D/wheels $D/cache
cp /usr/share/datasets/fashion-mnist/*.gz $D/fashion-mnist/
cp /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf $D/fonts/
# The versions this machine runs; --no-deps: each one the image lacks is named (its list: the device tool's KINDS.md).
pins=$(python3 - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in
      ("mlxtend", "librosa", "soundfile", "soxr", "audioread", "pooch", "platformdirs", "decorator", "cffi", "pycparser",
       "pytest-xdist", "execnet")))   # pyproject's addopts run pytest in xdist workers
EOF
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d $D/wheels $pins
GANKIT_CACHE=$PWD/$D/cache python3 -m gankit features train fashion-mnist
du -sh $D
echo "carry: [\"$D\"]  (the working tree and carried paths travel up to 64 MiB together)"
