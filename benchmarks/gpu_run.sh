#!/usr/bin/env bash
# The prepared GPU run (docs/gpu-run.md): ONE device command of at most 10 minutes that
#   1. records the environment (GPU, driver, torch/CUDA, commit) and this script's log   -> $OUT/env.txt
#   2. runs the speed step, benchmarks/gpu_speed.py all (at most 240 s, at most half of the budget
#      left when the publishing run follows)                                                              -> $OUT/speed.jsonl, $OUT/choice.json
#   3. runs `dip publish-run` with what is left of the budget: the paper profile in priority
#      order, resuming from the committed bundle results-published/paper-<gpu>, the speed
#      step's choice applied                                                            -> $OUT/part-*.tar.gz (≤ 4), $OUT/publish_run.jsonl
# At most 8 files land in $OUT. Needs python3 with torch, numpy, scikit-image, typer, rich, pyyaml
# (no dvc, no network): the images come from a folder laid out like ../shared/images, carried
# with the checkout (default .gpu-images/).
#
# Usage, from the repository root:  DIP_COMMIT=<sha> bash benchmarks/gpu_run.sh
# Environment: OUT (set by the device tool; else DIP_GPU_OUT) · DIP_MIRROR (images, default .gpu-images) ·
#   DIP_GPU_BUDGET (seconds for the whole script, default 570 for a 600 s call) · DIP_GPU_PROFILE
#   (paper; smoke for a CPU check) · DIP_GPU_BUNDLE (default results-published/<profile>-<gpu>, e.g.
#   paper-h200) · DIP_GPU_STEPS ("speed publish" by default; "speed" or "publish" for one of them:
#   two calls give the publishing run a whole 10-minute command) · DIP_GPU_CHOICE (a choice file of
#   an earlier speed step, e.g. benchmarks/results/gpu-h200-choice.json copied from its OUT; missing: a warning) ·
#   DIP_GPU_SPEED (0 skips the speed step) · DIP_GPU_SPEED_MODE (gpu_speed.py's mode, default all) ·
#   DIP_COMMIT (the commit, recorded in the parts).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${DIP_GPU_OUT:?set OUT (or DIP_GPU_OUT) to the folder for the results}}
BUDGET=${DIP_GPU_BUDGET:-570}
PROFILE=${DIP_GPU_PROFILE:-paper}
export DIP_MIRROR=${DIP_MIRROR:-$PWD/.gpu-images} PYTHONPATH=$PWD PYTHONUNBUFFERED=1 DIP_DEBUG=1
start=$SECONDS
left() { echo $(( BUDGET - (SECONDS - start) )); }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/env.txt") 2>&1

echo "== environment ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "nvidia-smi: not available"
GPU=$(python3 -c "
import re, sys, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', name, file=sys.stderr)
print((re.findall(r'[a-z]*\d+[a-z]*', name.lower()) or [re.sub(r'[^a-z0-9]+', '-', name.lower())])[0])" || echo unknown)
COMMIT=${DIP_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
echo "commit $COMMIT; profile $PROFILE; budget ${BUDGET}s; images $DIP_MIRROR"
[[ "$COMMIT" != unknown ]] && export DIP_COMMIT=$COMMIT
MIRROR=(--mirror "$DIP_MIRROR")
if [[ ! -f "$DIP_MIRROR/MANIFEST.tsv" ]]; then
  if [[ $PROFILE != smoke ]]; then
    echo "error: no images folder at $DIP_MIRROR (laid out like ../shared/images); copy it into the checkout and carry it (docs/gpu-run.md)"
    exit 2
  fi
  echo "no images folder at $DIP_MIRROR: the smoke profile's images come with the package"
  unset DIP_MIRROR; MIRROR=()
fi
BUNDLE=${DIP_GPU_BUNDLE:-results-published/$PROFILE-$GPU}
echo "bundle $BUNDLE ($( [[ -f $BUNDLE/manifest.json ]] && echo 'resuming from it' || echo 'not there yet: nothing is skipped'))"

STEPS=${DIP_GPU_STEPS:-speed publish}
CHOICE=()
if [[ -n ${DIP_GPU_CHOICE:-} && -f $DIP_GPU_CHOICE ]]; then
  CHOICE=(--choice "$DIP_GPU_CHOICE"); echo "choice from $DIP_GPU_CHOICE: $(head -c 600 "$DIP_GPU_CHOICE")"
elif [[ -n ${DIP_GPU_CHOICE:-} ]]; then
  echo "warning: no choice file at $DIP_GPU_CHOICE (a fresh machine?): the publishing run uses params.yaml's settings"
fi
if [[ " $STEPS " == *" speed "* && ${DIP_GPU_SPEED:-1} != 0 ]]; then
  MODE=${DIP_GPU_SPEED_MODE:-all}
  TINY=(); [[ $PROFILE == smoke ]] && TINY=(--tiny)
  if [[ " $STEPS " == *" publish "* ]]; then
    SPEED=$(( $(left) / 2 < 240 ? $(left) / 2 : 240 ))  # at most 240 s, and never more than half of what is left
  else
    SPEED=$(( $(left) < 240 ? $(left) : 240 ))
  fi
  mkdir -p .gpu-cache  # torch.compile's caches: kept on a warm machine for the publishing call (not carried)
  echo "== speed step: gpu_speed.py $MODE (at most ${SPEED} s)"
  t0=$SECONDS
  timeout "$SPEED" python3 benchmarks/gpu_speed.py "$MODE" --budget $(( SPEED - 10 )) "${TINY[@]}" --choice "$OUT/choice.json" \
    --compile-cache "$PWD/.gpu-cache/compile-cache.bin" --out "$OUT/speed.jsonl" || echo "speed step ended with exit code $?"
  echo "speed step: $((SECONDS - t0)) s"
  if python3 -c "import json, sys; c = json.load(open(sys.argv[1])); assert isinstance(c, dict)" "$OUT/choice.json" 2>/dev/null; then
    mkdir -p .gpu-results && cp "$OUT/choice.json" .gpu-results/choice.json
    CHOICE=(--choice "$OUT/choice.json"); echo "choice: $(head -c 600 "$OUT/choice.json")"
  else
    echo "no usable choice file: the publishing run uses params.yaml's settings"
  fi
else
  echo "== speed step skipped (DIP_GPU_STEPS=$STEPS, DIP_GPU_SPEED=${DIP_GPU_SPEED:-1})"
fi
[[ " $STEPS " == *" publish "* ]] || { echo "== done in $((SECONDS - start)) s (speed step only)"; exit 0; }

RUN=$(( $(left) - 5 ))  # publish-run keeps its own margin (10 s) for its end
echo "== publishing run: ${RUN}s"
if (( RUN < 30 )); then echo "too little time left for the publishing run"; exit 1; fi
timeout -k 5 $(( RUN + 5 )) python3 -m pipeline.cli publish-run --profile "$PROFILE" --budget "$RUN" --out "$OUT" \
  --bundle "$BUNDLE" "${MIRROR[@]}" --work .gpu-results "${CHOICE[@]}"
rc=$?
rm -f "$OUT"/.*.tmp* 2>/dev/null  # a temporary part left by a kill; finished parts are complete files
echo "== done in $((SECONDS - start)) s (publish-run exit code $rc); $(ls "$OUT" | wc -l) file(s) in OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
