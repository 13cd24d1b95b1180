#!/usr/bin/env bash
# Every GPU check of gankit in one script, for a machine lent for a few minutes: the GPU tests,
# the GPU speed table, the GPU recipe's quality run and the whole suite. Results go to $OUT
# (default ./gpu-results), each part under its own time limit so one slow part cannot eat the rest.
#
#   bash benchmarks/gpu_session.sh [PART ...]     # parts: env gpu-tests speed recipe suite (default: all)
#
# The machine needs PyTorch with CUDA and gankit's dependencies; what this repository cannot
# assume there is carried in .devdata/ (made by scripts/gpu_carry.sh, ignored by git): fashion-mnist/
# (the four IDX files), fonts/ (the colour emoji font), wheels/ (mlxtend, librosa, soundfile, ...)
# and cache/ (the domain feature network this machine's README numbers were measured with, so FIDs
# are comparable). The speech synthesisers (espeak-ng, flite) cannot be carried: where they are
# missing the suite leaves out the tests marked `speech` and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
parts=${*:-env gpu-tests speed recipe suite}

if [ -d .devdata/fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  mkdir -p /usr/share/datasets && cp -r .devdata/fashion-mnist /usr/share/datasets/
fi
if [ -f .devdata/fonts/NotoColorEmoji.ttf ] && [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  mkdir -p /usr/share/fonts/truetype/noto && cp .devdata/fonts/NotoColorEmoji.ttf /usr/share/fonts/truetype/noto/
fi
if ls .devdata/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devdata/wheels/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
bench_env() { if [ -d .devdata/cache ]; then GANKIT_CACHE=$PWD/.devdata/cache "$@"; else "$@"; fi; }

for part in $parts; do
  echo "=== $part ($(date +%T))"
  case $part in
    env)
      nvidia-smi -L
      python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
      ;;
    gpu-tests)
      timeout "${GPU_TESTS_S:-80}" python3 -m pytest -n 0 -m gpu -q -rA -p no:cacheprovider tests/ 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
      ;;
    speed)
      bench_env timeout "${SPEED_S:-100}" python3 benchmarks/speed.py --gpu-only --out "$OUT/speed_gpu.jsonl" 2>&1 \
        | tee "$OUT/speed.log" | tail -22
      ;;
    recipe)
      # RECIPE_ARGS: arguments of benchmarks/quality_vs_time.py (entries, variants, minutes, marks)
      bench_env timeout "${RECIPE_S:-165}" python3 benchmarks/quality_vs_time.py --device cuda --seeds 0 --warmup 0 \
        --out "$OUT/quality" --plot /tmp/quality_vs_time.png ${RECIPE_ARGS:---entries gpu --minutes 2 --marks 2 --n 10000} 2>&1 \
        | tee "$OUT/recipe.log" | tail -15
      ;;
    suite)
      # Everything but the GPU tests (part gpu-tests), in parallel, test by test (--dist load: 14 workers
      # balance better than whole files, at the price of some module fixtures built more than once). The browser tests need Chromium
      # and the MP4 test ffmpeg, which the GPU image lacks; the `speech` tests espeak-ng and flite.
      # -vv (pyproject adds -q): each result is in the log as it comes, so a run cut by its time limit still names its failures.
      marks="not gpu"
      if ! command -v espeak-ng >/dev/null || ! command -v flite >/dev/null; then
        marks="not gpu and not speech"; echo "no espeak-ng/flite here: the tests marked speech are left out"
      fi
      timeout "${SUITE_S:-240}" python3 -m pytest -vv -p no:cacheprovider -n "${SUITE_WORKERS:-14}" --dist load -m "$marks" \
        --deselect tests/test_report.py::test_report_renders_in_headless_chromium \
        --deselect tests/test_serve.py::test_page_draws_samples_and_the_walk_slider_changes_the_picture \
        --deselect tests/test_serve.py::test_an_uploaded_image_round_trips_through_the_translator \
        --deselect tests/test_animate.py::test_animate_mp4 > "$OUT/suite.log" 2>&1
      echo "exit $?"; grep -E "(FAILED|ERROR) tests/" "$OUT/suite.log" | sed 's/^\[gw[0-9]*\] \[ *[0-9]*%\] //' | sort -u | head -30
      tail -3 "$OUT/suite.log"
      ;;
    *) echo "unknown part $part; parts: env gpu-tests speed recipe suite" ;;
  esac
done
