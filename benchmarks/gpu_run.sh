#!/usr/bin/env bash
# One GPU run for issue 10, in one go within ~9 minutes, on a machine with torch, numpy,
# scikit-image, pandas, typer, rich, pyyaml (no dvc, streamlit, bm3d, no network):
#   1. environment (nvidia-smi, torch/CUDA versions, commit)            -> env.txt
#   2. speed: every loop variant, single and grouped, fp32/bf16           -> speed.jsonl
#   3. agreement: graph vs eager, bf16 vs fp32, 2000 its on barbara       -> agree.jsonl
#   4. tweaks (native batch norm, channels-last + layout-keeping pad, bf16) and torch.compile at
#      256² (compile time included, at most 45 s)                          -> speed.jsonl
#   5. the paper profile's stages called directly (profile, fetch from the images folder,
#      corrupt, run inpaint_p50 = Table 1, sr_x4, denoise_s25, sr_x8, denoise_s8.5, the figures
#      while time is left), one fit at a time (DIP_GPU_GROUP), wall time each; finished fits of an
#      earlier run are reused if its results-*.tgz lie in .gpu-results/ (carry it)
#      -> pipeline.jsonl; results-<part>.tgz (inpaint+figures, sr_x4, sr_x8, denoise: run.json,
#      curve.csv, restored.png of every fit, snapshots of peppers, man and the figures only),
#      refreshed every 30 s, so a timeout loses little
# Usage, from the repository root:
#   DIP_MIRROR=<folder laid out like ../shared/images, inside the checkout> DIP_GPU_OUT=<folder> bash benchmarks/gpu_run.sh 2>&1 | tee -a <folder>/env.txt
# At most 8 files land in DIP_GPU_OUT. DIP_GPU_BUDGET: seconds for the whole run (default 520);
# DIP_GPU_STEPS: which of "speed agree tweaks compile pipeline" to run (default all); DIP_GPU_GROUP: engine.group (1);
# DIP_GPU_PROFILE: the profile (default params.yaml's: auto = paper on CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${DIP_GPU_OUT:?set DIP_GPU_OUT to the folder for the results}
: "${DIP_MIRROR:?set DIP_MIRROR to the images folder (laid out like ../shared/images)}"
BUDGET=${DIP_GPU_BUDGET:-520}
TINY=${DIP_GPU_TINY:+--tiny}  # DIP_GPU_TINY=1: tiny benchmark settings (a CPU check of this script)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 DIP_MIRROR DIP_DEBUG=1
mkdir -p "$OUT"
start=$SECONDS
left() { echo $(( BUDGET - (SECONDS - start) )); }

{ nvidia-smi || true; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"
  git rev-parse HEAD 2>/dev/null || true; date -u; } >> "$OUT/env.txt" 2>&1

STEPS=${DIP_GPU_STEPS:-speed agree tweaks compile pipeline}
if [[ " $STEPS " == *" speed "* ]]; then
  timeout 150 python3 benchmarks/gpu_speed.py speed $TINY --out "$OUT/speed.jsonl" || echo "speed step ended with $?"
fi
if [[ " $STEPS " == *" agree "* ]]; then
  timeout 100 python3 benchmarks/gpu_speed.py agree $TINY --image "$DIP_MIRROR/inpainting11/barbara.png" --out "$OUT/agree.jsonl" \
    || echo "agree step ended with $?"
fi
if [[ " $STEPS " == *" tweaks "* ]]; then
  timeout 90 python3 benchmarks/gpu_speed.py tweaks $TINY --out "$OUT/speed.jsonl" || echo "tweaks step ended with $?"
fi
if [[ " $STEPS " == *" compile "* ]]; then
  timeout 45 python3 benchmarks/gpu_speed.py compile $TINY --out "$OUT/speed.jsonl" || echo "compile step ended with $? (killed at 45 s: compiling one shape takes longer)"
fi
[[ " $STEPS " == *" pipeline "* ]] || exit 0

# engine.group for the pipeline: DIP_GPU_GROUP (default 1: each fit is saved as soon as it ends, so a
# time limit loses at most the fit in flight; grouping measured 1.22x at best on an H200)
GROUP=${DIP_GPU_GROUP:-1}
python3 - "$GROUP" <<'PY'
import os, sys, yaml
p = yaml.safe_load(open("params.yaml"))
p["profile"] = os.environ.get("DIP_GPU_PROFILE", p["profile"])  # auto = paper on CUDA; smoke for a CPU check
p["engine"]["group"] = sys.argv[1] if sys.argv[1] == "auto" else int(sys.argv[1])
yaml.safe_dump(p, open("params.gpu.yaml", "w"), sort_keys=False)
PY
echo "engine.group for the pipeline: $GROUP"
# results of an earlier run (its results-*.tgz copied into .gpu-results/ and carried): finished
# fits whose settings and code are unchanged are reused, so the paper profile can be run in parts
for t in .gpu-results/results-*.tgz; do [ -f "$t" ] && tar xzf "$t" && echo "resumed from $t"; done
P=(--params params.gpu.yaml)

stage() {  # stage NAME CMD...: run a pipeline stage within the time left, record its wall time
  local name=$1; shift
  local t0=$SECONDS budget; budget=$(left)
  if (( budget < 20 )); then echo "skip $name: ${budget}s left"; return 1; fi
  timeout "$budget" "$@"; local rc=$?
  echo "{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"group\": \"$GROUP\"}" | tee -a "$OUT/pipeline.jsonl"
  return $rc
}
pack() {  # pack NAME DIR...: the results of DIRs (those that exist) into $OUT/results-NAME.tgz, replaced atomically
  local name=$1; shift; local dirs=()
  for d in "$@"; do [ -d "results/$d" ] && dirs+=("results/$d"); done
  (( ${#dirs[@]} )) || return 0
  if tar czf "$OUT/.$name.part" --exclude='results/inpaint_p50/[!pm]*/*/snapshots' --exclude='results/sr_x*/*/*/snapshots' \
       --exclude='results/denoise_*/*/*/snapshots' data/profile.json "${dirs[@]}" 2>/dev/null; then
    mv "$OUT/.$name.part" "$OUT/results-$name.tgz"
  else rm -f "$OUT/.$name.part"; fi
}
FIGURES="fig7_text fig6_vase fig8_library sup_kate98 real_snail flash_cave sr_prior_none sr_prior_tv sr_prior_dip"
snapshot() {
  pack inpaint inpaint_p50 $FIGURES; pack sr_x4 sr_x4; pack sr_x8 sr_x8; pack denoise denoise_s25 denoise_s8.5
}
( while sleep 30; do snapshot; done ) &
tarrer=$!
trap 'kill $tarrer 2>/dev/null; snapshot' EXIT

stage profile python3 -m pipeline.cli profile "${P[@]}" \
  && stage fetch python3 -m pipeline.cli fetch "${P[@]}" --mirror "$DIP_MIRROR" \
  && stage corrupt python3 -m pipeline.cli corrupt "${P[@]}" \
  && for exp in inpaint_p50 sr_x4 denoise_s25 sr_x8 denoise_s8.5 $FIGURES; do
       stage "run $exp" python3 -m pipeline.cli run "$exp" "${P[@]}" || true
     done
echo "done in $((SECONDS - start)) s"
