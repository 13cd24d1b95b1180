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
#
# Time: the parts' limits (GPU_TESTS_S SPEED_S RECIPE_S SUITE_S) are 70 + 75 + 150 + 180 = 475 s;
# a part at its limit gets SIGINT, then up to 5-15 s to wind down (pytest prints its summary line
# and the short summary of failures; the scripts have flushed their rows), so the whole script
# ends by ~540 s even when every part runs into its limit: 60 s of a 600 s call stay for the
# copies, the wheel install and the start-ups. Most valuable first: GPU tests, speed, recipe, suite.
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
      timeout -s INT -k 5 "${GPU_TESTS_S:-70}" python3 -m pytest -n 0 -m gpu -q -rA -p no:cacheprovider tests/ 2>&1 \
        | tee "$OUT/gpu_tests.log" | tail -25
      ;;
    speed)
      bench_env timeout -s INT -k 5 "${SPEED_S:-75}" python3 benchmarks/speed.py --gpu-only --out "$OUT/speed_gpu.jsonl" 2>&1 \
        | tee "$OUT/speed.log" | tail -22
      ;;
    recipe)
      # RECIPE_ARGS: arguments of benchmarks/quality_vs_time.py (entries, variants, minutes, marks)
      bench_env timeout -s INT -k 10 "${RECIPE_S:-150}" python3 benchmarks/quality_vs_time.py --device cuda --seeds 0 --warmup 0 \
        --out "$OUT/quality" --plot /tmp/quality_vs_time.png ${RECIPE_ARGS:---entries gpu --minutes 2 --marks 2 --n 10000} 2>&1 \
        | tee "$OUT/recipe.log" | tail -15
      ;;
    suite)
      # Everything but the GPU tests (part gpu-tests), in parallel, test by test (--dist load: 14 workers
      # balance better than whole files, at the price of some module fixtures built more than once). The browser tests need Chromium
      # and the MP4 test ffmpeg, which the GPU image lacks; the `speech` tests espeak-ng and flite.
      # -vv (pyproject adds -q): each result is in the log as it comes, so a run cut by its time limit still names its
      # failures; the limit sends SIGINT, on which pytest stops its workers and still prints the summary line
      # ("N passed, M failed ... in S s") and, with -rfE, every failure and error so far.
      marks="not gpu"
      if ! command -v espeak-ng >/dev/null || ! command -v flite >/dev/null; then
        marks="not gpu and not speech"; echo "no espeak-ng/flite here: the tests marked speech are left out"
      fi
      timeout -s INT -k 15 "${SUITE_S:-180}" python3 -m pytest -vv -rfE -p no:cacheprovider -n "${SUITE_WORKERS:-14}" --dist load -m "$marks" \
        --deselect tests/test_report.py::test_report_renders_in_headless_chromium \
        --deselect tests/test_serve.py::test_page_draws_samples_and_the_walk_slider_changes_the_picture \
        --deselect tests/test_serve.py::test_an_uploaded_image_round_trips_through_the_translator \
        --deselect tests/test_animate.py::test_animate_mp4 > "$OUT/suite.log" 2>&1
      echo "exit $? (124: cut by its limit)"; grep -E "(FAILED|ERROR) tests/" "$OUT/suite.log" | sed 's/^\[gw[0-9]*\] \[ *[0-9]*%\] //' | sort -u | head -30
      grep -E "^=+ .*(passed|failed|error|no tests ran).* in [0-9.]+s" "$OUT/suite.log" | tail -1 | grep . \
        || tail -3 "$OUT/suite.log"  # killed before pytest's summary: its last lines
      ;;
    *) echo "unknown part $part; parts: env gpu-tests speed recipe suite" ;;
  esac
done
echo "=== done in ${SECONDS} s"
