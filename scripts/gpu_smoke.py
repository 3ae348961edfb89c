#!/usr/bin/env python
"""Check makemore on this machine's GPU: fit, test and sample there, and print what ran where.

    python scripts/gpu_smoke.py                 # after the README's install, on a machine with CUDA
    python scripts/gpu_smoke.py --steps 2000 --config configs/challenge.yaml

It runs the real CLI in this process: `fit` of --config for --steps SGD steps with `accelerator: auto`,
`test` of the run's last checkpoint, and `sample --device cuda` from it. Runs go to a new temporary
folder (or --root), so nothing of yours is touched. Exit status 1 when there is no CUDA device or when
anything ran elsewhere than on it.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from makemore.cli import main

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default=str(REPO / "configs" / "mlp.yaml"), help="config to fit (default: mlp.yaml)"
    )
    parser.add_argument("--steps", type=int, default=5000, help="SGD steps of the fit (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=None, help="run folder (default: a new temporary folder)")
    return parser.parse_args()


def main_check() -> int:
    args = parse_args()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device visible to torch; nothing to check")
        return 1
    print(f"device: {torch.cuda.get_device_name(0)}")
    root = args.root or Path(tempfile.mkdtemp(prefix="makemore-gpu-"))
    common = ["--config", args.config, "--trainer.default_root_dir", str(root), "--trainer.accelerator", "auto"]
    where = {}

    start = time.perf_counter()
    fit = main(["fit", *common, "--trainer.max_steps", str(args.steps), "--data.val_every_n_steps", str(args.steps)])
    where["fit"] = str(fit.trainer.strategy.root_device)  # the model is moved back to the CPU after a run
    print(
        f"fit: {args.steps} SGD steps in {time.perf_counter() - start:.1f} s on {where['fit']},"
        f" val_loss {fit.trainer.callback_metrics['val_loss'].item():.4f}"
    )
    last = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"

    test = main(["test", *common, "--ckpt_path", str(last)])
    where["test"] = str(test.trainer.strategy.root_device)
    print(f"test: test_loss {test.trainer.callback_metrics['test_loss'].item():.4f} on {where['test']}")

    from makemore.checkpoint import load_network

    where["sample"] = str(next(load_network(str(last), map_location="cuda")[0].parameters()).device)
    main(["sample", "--ckpt_path", str(last), "--device", "cuda", "--num_samples", "5"])
    print(f"sample: on {where['sample']}")

    elsewhere = {step: device for step, device in where.items() if not device.startswith("cuda")}
    print(f"run folder: {root}")
    print(
        "gpu_smoke: "
        + ("PASSED: fit, test and sample ran on the GPU" if not elsewhere else f"FAILED: not on the GPU: {elsewhere}")
    )
    return 1 if elsewhere else 0


if __name__ == "__main__":
    sys.exit(main_check())
