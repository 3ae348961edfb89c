#!/usr/bin/env python
"""Check makemore on this machine's GPU: fit, test and sample there, and print what ran where.

    python scripts/gpu_smoke.py                 # after the README's install, on a machine with CUDA
    python scripts/gpu_smoke.py --steps 2000 --config configs/challenge.yaml configs/shakespeare/gpt.yaml

It runs the real CLI in this process, for each --config (default: the lecture's MLP on names and the lecture's
GPT on tiny shakespeare): `fit` for --steps SGD steps with `accelerator: auto` (throughput printed), `test` of
the run's last checkpoint (`validate` for a text without a test split), and `sample --device cuda` from it. Runs go to a new temporary
folder (or --root), so nothing of yours is touched. Exit status 1 when there is no CUDA device or when
anything ran elsewhere than on it.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from makemore.cli import main, run_cli

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        nargs="+",
        default=[str(REPO / "configs" / "mlp.yaml"), str(REPO / "configs" / "shakespeare" / "gpt.yaml")],
        help="configs to fit (default: mlp.yaml and shakespeare/gpt.yaml)",
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
    failed = {}
    for number, config in enumerate(args.config):
        where = check(config, args.steps, root / f"run_{number}")
        failed.update({f"{Path(config).name} {step}": device for step, device in where.items() if device != "cuda"})
    print(f"run folders: {root}")
    print(
        "gpu_smoke: "
        + ("PASSED: fit, evaluation and sample ran on the GPU" if not failed else f"FAILED: not on the GPU: {failed}")
    )
    return 1 if failed else 0


def check(config: str, steps: int, root: Path) -> dict[str, str]:
    """fit, evaluate and sample one config; the device type each ran on."""
    common = ["--config", config, "--trainer.default_root_dir", str(root), "--trainer.accelerator", "auto"]
    where = {}
    start = time.perf_counter()
    fit = run_cli(["fit", *common, "--trainer.max_steps", str(steps), "--data.val_every_n_steps", str(steps)])
    seconds = time.perf_counter() - start
    where["fit"] = fit.trainer.strategy.root_device.type  # the model is moved back to the CPU after a run
    data = fit.datamodule.hparams
    tokens = steps * data.batch_size * (data.block_size if data.format == "text" else 1)
    print(
        f"{Path(config).name} fit: {steps} SGD steps in {seconds:.1f} s on {where['fit']} ({steps / seconds:.1f}"
        f" steps/s, {tokens / seconds:,.0f} examples/s, validation included), val_loss"
        f" {fit.trainer.callback_metrics['val_loss'].item():.4f}"
    )
    last = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"
    stage = "test" if "test" in fit.datamodule.examples else "validate"
    evaluated = run_cli([stage, *common, "--ckpt_path", str(last)])
    where[stage] = evaluated.trainer.strategy.root_device.type
    print(f"{stage}: {stage}_loss {evaluated.trainer.callback_metrics[f'{stage}_loss'].item():.4f} on {where[stage]}")

    from makemore.checkpoint import load_network

    where["sample"] = next(load_network(str(last), map_location="cuda")[0].parameters()).device.type
    text = data.format == "text"
    main(["sample", "--ckpt_path", str(last), "--device", "cuda", *(["--max_new_chars", "300"] if text else [])])
    print(f"sample: on {where['sample']}")
    return where


if __name__ == "__main__":
    sys.exit(main_check())
