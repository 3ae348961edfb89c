"""Search challenge settings on the validation split: run candidate overrides of configs/challenge.yaml in parallel.

The search behind configs/challenge.yaml ran on a GPU machine, 13 candidates in parallel; its
results are in README. Each candidate is a name and a list of CLI overrides; every run is a real `python -m makemore fit`, and its
score is the best validation loss its checkpoint callback kept. Only validation loss is read: the test
split is touched once, for the chosen config, by `python -m makemore test`.

    python scripts/challenge_search.py --workers 12 --accelerator gpu --root lightning_logs/challenge_search
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def cosine(steps: int) -> list[str]:
    return ["--trainer.max_steps", str(steps), "--model.lr_scheduler.init_args.T_max", str(steps)]


def model(block: int, embd: int, hidden: int, layers: int, dropout: float, batch: int = 128) -> list[str]:
    return [
        "--data.block_size",
        str(block),
        "--model.net.n_embd",
        str(embd),
        "--model.net.n_hidden",
        str(hidden),
        "--model.net.n_layers",
        str(layers),
        "--model.net.dropout",
        str(dropout),
        "--data.batch_size",
        str(batch),
    ]


CANDIDATES = {
    "b8_e24_h256_d0.1_100k": model(8, 24, 256, 2, 0.1) + cosine(100_000),
    "b8_e32_h512_d0.2_80k": model(8, 32, 512, 2, 0.2) + cosine(80_000),
    "b8_e32_h512_d0.3_80k": model(8, 32, 512, 2, 0.3) + cosine(80_000),
    "b8_e32_h512_d0.4_80k": model(8, 32, 512, 2, 0.4) + cosine(80_000),
    "b10_e32_h512_d0.3_80k": model(10, 32, 512, 2, 0.3) + cosine(80_000),
    "b12_e24_h512_d0.3_80k": model(12, 24, 512, 2, 0.3) + cosine(80_000),
    "b8_e48_h512_d0.3_80k": model(8, 48, 512, 2, 0.3) + cosine(80_000),
    "b8_e32_h384_l3_d0.2_80k": model(8, 32, 384, 3, 0.2) + cosine(80_000),
    "b8_e32_h512_d0.3_80k_lr1e-2": model(8, 32, 512, 2, 0.3) + cosine(80_000) + ["--model.learning_rate", "0.01"],
    "b8_e32_h512_d0.3_80k_wd0.3": model(8, 32, 512, 2, 0.3)
    + cosine(80_000)
    + ["--model.optimizer.init_args.weight_decay", "0.3"],
    "b8_e32_h512_d0.3_80k_bs256": model(8, 32, 512, 2, 0.3, batch=256) + cosine(80_000),
    "b8_e32_h1024_l1_d0.4_80k": model(8, 32, 1024, 1, 0.4) + cosine(80_000),
    "b16_e24_h512_d0.3_80k": model(16, 24, 512, 2, 0.3) + cosine(80_000),
}


def best_val_loss(run_dir: Path) -> float:
    scores = [
        float(m.group(1)) for p in run_dir.rglob("*.ckpt") if (m := re.search(r"val_loss=([0-9.]+)\.ckpt", p.name))
    ]
    return min(scores) if scores else float("nan")


def run(name: str, overrides: list[str], args: argparse.Namespace) -> dict:
    run_dir = Path(args.root) / name
    command = [
        sys.executable,
        "-m",
        "makemore",
        "fit",
        "--config",
        args.config,
        *overrides,
        "--trainer.accelerator",
        args.accelerator,
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        *args.extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.time()
    log = run_dir.parent / f"{name}.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    result = {"name": name, "val_loss": best_val_loss(run_dir), "seconds": round(time.time() - start), "exit": code}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/challenge.yaml")
    parser.add_argument("--root", default="lightning_logs/challenge_search")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument("extra", nargs="*", help="more CLI overrides for every run, after --")
    args = parser.parse_args()
    names = args.only or list(CANDIDATES)
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda n: run(n, CANDIDATES[n], args), names))
    results.sort(key=lambda r: r["val_loss"])
    Path(args.root).mkdir(parents=True, exist_ok=True)
    (Path(args.root) / "results.json").write_text(json.dumps(results, indent=1))
    print("| candidate | best val loss | seconds |\n|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['val_loss']:.4f} | {r['seconds']} |")


if __name__ == "__main__":
    main()
