#!/usr/bin/env bash
# One call on a lent GPU machine (see README): accelerator auto on a GPU, then the challenge search.
# Its image has torch and lightning but not jsonargparse: wheels travel in .whl (git-ignored).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L; nproc
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
start=$(date +%s)
python3 -m makemore fit --config configs/mlp.yaml --trainer.max_steps 5000 --trainer.default_root_dir /tmp/gpu \
  --trainer.enable_progress_bar false 2>&1 | grep -E "GPU available|max_steps|Error|error" | tee $OUT/gpu_fit.txt
ckpt=$(ls /tmp/gpu/lightning_logs/version_0/checkpoints/last.ckpt)
python3 -m makemore test --config configs/mlp.yaml --ckpt_path "$ckpt" --trainer.default_root_dir /tmp/gpu 2>&1 | grep -E "test_loss|GPU|rror" | tee -a $OUT/gpu_fit.txt
python3 -m makemore sample --ckpt_path "$ckpt" --device cuda --num_samples 5 | tee -a $OUT/gpu_fit.txt
echo "gpu check took $(( $(date +%s) - start )) s"
nvidia-cuda-mps-control -d && echo "MPS on" || echo "no MPS"
timeout "${SEARCH_SECONDS:-420}" python3 scripts/challenge_search.py --workers 13 --accelerator gpu --root /tmp/cs | tee $OUT/search.txt
for f in /tmp/cs/*.log; do echo "== $f"; grep -E "val_loss|rror|Traceback" "$f" | tail -2; done > $OUT/logs_tail.txt 2>&1
python3 - <<'PY' | tee -a $OUT/search.txt
import re, pathlib
for d in sorted(pathlib.Path("/tmp/cs").iterdir()):
    if d.is_dir():
        s = [(float(m.group(2)), int(m.group(1))) for p in d.rglob("*.ckpt") if (m := re.search(r"step=(\d+)-val_loss=([0-9.]+?)\.ckpt", p.name))]
        print(d.name, min(s) if s else None)
PY
