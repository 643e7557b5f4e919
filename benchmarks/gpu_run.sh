#!/usr/bin/env bash
# One GPU run for issue 10, in one go within ~9 minutes, on a machine with torch, numpy,
# scikit-image, pandas, typer, rich, pyyaml (no dvc, streamlit, bm3d, no network):
#   1. environment (nvidia-smi, torch/CUDA versions, commit)            -> env.txt
#   2. speed: every loop variant, single and grouped, fp32/bf16           -> speed.jsonl
#   3. agreement: graph vs eager, bf16 vs fp32, 2000 its on barbara       -> agree.jsonl
#   4. the paper profile's stages called directly (profile, fetch from the images folder,
#      corrupt, run inpaint_p50, then other experiments while time is left), wall time each
#      -> pipeline.jsonl, results.tgz (refreshed every 30 s, so a timeout loses little)
# Usage, from the repository root:
#   DIP_MIRROR=<folder laid out like ../shared/images, inside the checkout> DIP_GPU_OUT=<folder> bash benchmarks/gpu_run.sh
# At most 8 files land in DIP_GPU_OUT. DIP_GPU_BUDGET: seconds for the whole run (default 530);
# DIP_GPU_STEPS: which of 'speed agree pipeline' to run (default all).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${DIP_GPU_OUT:?set DIP_GPU_OUT to the folder for the results}
: "${DIP_MIRROR:?set DIP_MIRROR to the images folder (laid out like ../shared/images)}"
BUDGET=${DIP_GPU_BUDGET:-530}
TINY=${DIP_GPU_TINY:+--tiny}  # DIP_GPU_TINY=1: tiny benchmark settings (a CPU check of this script)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 DIP_MIRROR
mkdir -p "$OUT"
start=$SECONDS
left() { echo $(( BUDGET - (SECONDS - start) )); }

{ nvidia-smi || true; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"
  git rev-parse HEAD 2>/dev/null || true; date -u; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

STEPS=${DIP_GPU_STEPS:-speed agree pipeline}
if [[ " $STEPS " == *" speed "* ]]; then
  timeout 200 python3 benchmarks/gpu_speed.py speed $TINY --out "$OUT/speed.jsonl" || echo "speed step ended with $?"
fi
if [[ " $STEPS " == *" agree "* ]]; then
  timeout 120 python3 benchmarks/gpu_speed.py agree $TINY --image "$DIP_MIRROR/inpainting11/barbara.png" --out "$OUT/agree.jsonl" \
    || echo "agree step ended with $?"
fi
[[ " $STEPS " == *" pipeline "* ]] || exit 0

stage() {  # stage NAME CMD...: run a pipeline stage within the time left, record its wall time
  local name=$1; shift
  local t0=$SECONDS budget; budget=$(left)
  if (( budget < 20 )); then echo "skip $name: ${budget}s left"; return 1; fi
  timeout "$budget" "$@"; local rc=$?
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0))}" | tee -a "$OUT/pipeline.jsonl"
  return $rc
}
snapshot() {  # results so far, replaced atomically
  [ -d results ] || return 0
  if tar czf "$OUT/.results.tgz.part" results data/profile.json 2>/dev/null; then mv "$OUT/.results.tgz.part" "$OUT/results.tgz"
  else rm -f "$OUT/.results.tgz.part"; fi
}
( while sleep 30; do snapshot; done ) &
tarrer=$!
trap 'kill $tarrer 2>/dev/null; snapshot' EXIT

stage profile python3 -m pipeline.cli profile \
  && stage fetch python3 -m pipeline.cli fetch --mirror "$DIP_MIRROR" \
  && stage corrupt python3 -m pipeline.cli corrupt \
  && for exp in inpaint_p50 sr_x4 denoise_s25 sr_x8 denoise_s8.5; do stage "run $exp" python3 -m pipeline.cli run "$exp" || true; done
echo "done in $((SECONDS - start)) s"
