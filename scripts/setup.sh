#!/usr/bin/env bash
# Installs gankit and everything it needs on a fresh machine (Debian/Ubuntu, Python >= 3.10).
#   bash scripts/setup.sh            # the package, PyTorch (CPU wheel unless a CUDA GPU is present),
#                                    # Fashion-MNIST, and what the tests need (pytest, Chromium, Playwright)
#   bash scripts/setup.sh --no-test  # without the test tools
# PyTorch is installed first and pinned, so pip never replaces it with a multi-GB CUDA build
# on a CPU machine. Off this machine, CPU-only users may point GANKIT_TORCH_INDEX at PyTorch's
# CPU wheel index.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip"
with_test=1
[ "${1:-}" = "--no-test" ] && with_test=0

# A Python its distribution manages (PEP 668: EXTERNALLY-MANAGED in its stdlib folder, as on Debian 12
# and Ubuntu 23.04+) refuses pip outside a virtual environment: say how to make one before installing anything.
if python3 -c 'import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)'; then
  echo "setup.sh: $(command -v python3) is managed by your system (PEP 668), so pip cannot install into it;" \
       "make and activate a virtual environment, then run this again:" \
       "python3 -m venv ~/.venvs/gankit && . ~/.venvs/gankit/bin/activate && bash scripts/setup.sh" \
       "(Debian/Ubuntu without venv: sudo apt-get install python3-venv)" >&2
  exit 1
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

apt_pkgs=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_pkgs+=(dataset-fashion-mnist)
# the speech synthesisers behind `gankit data make spoken-digits` (docs/audio.md)
command -v espeak-ng >/dev/null || apt_pkgs+=(espeak-ng)
command -v flite >/dev/null || apt_pkgs+=(flite)
# the colour emoji of the restoration and style-generator data (docs/restoration.md)
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || apt_pkgs+=(fonts-noto-color-emoji)
if [ "$with_test" = 1 ]; then
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
  command -v g++ >/dev/null || apt_pkgs+=(g++)  # torch.compile (inductor) builds C++ kernels on CPU; tested
fi
if [ ${#apt_pkgs[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

if ! python3 -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    $PIP install -q "torch>=2.2"                       # CUDA build for a GPU machine
  else
    $PIP install -q "torch==2.13.0" ${GANKIT_TORCH_INDEX:+--index-url "$GANKIT_TORCH_INDEX"}
  fi
fi
if [ "$with_test" = 1 ]; then
  $PIP install -q -e ".[test]"
else
  $PIP install -q -e .
fi
python3 -c "import gankit, torch; print(f'gankit {gankit.__version__} with torch {torch.__version__} installed')"
