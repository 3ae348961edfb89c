"""The baseline of issue #25: nanoGPT's README CPU recipe, run through nanoGPT's own train.py, timed.

It measures the wall-clock time of the whole `python train.py ...` process (from its start to its exit:
Python and torch start-up, model building, the 2,001 training iterations, the 9 evaluations of
eval_iters=20 random batches per split at steps 0, 250, ..., 2000 and the checkpoints it saves when val
improves), the time per iteration train.py prints, and its last "step N: train loss X, val loss Y" line.
That loss is estimate_loss(): the mean over eval_iters=20 random batches of 12 x 64 characters, a sampled
estimate, not the loss over the whole validation split.

The command is the one of nanoGPT's README ("I only have a macbook"), run unchanged in a scratch copy of the
nanoGPT tree (train.py reads `data/<dataset>` relative to its working directory, and writes its checkpoints
to `out-shakespeare-char` there):

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 \\
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 \\
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

nanoGPT's data/shakespeare_char/prepare.py downloads the text; this script writes the same three files
itself (train.bin and val.bin: uint16 token ids, the first 90% of the characters and the last 10%;
meta.pkl: vocab_size, itos, stoi over the sorted set of characters) from a local copy of tiny shakespeare.

Threads: nanoGPT does not call torch.set_num_threads, so train.py runs with torch's default intra-op thread
count (the number of physical cores here). `--threads N` sets OMP_NUM_THREADS=N (and MKL_NUM_THREADS) in
train.py's environment, which torch reads at start-up; the thread count train.py gets is recorded either way
(a probe process with the same environment prints torch.get_num_threads()).

    python -m benchmarks.nanogpt_baseline --nanogpt /tmp/nanogpt --out /tmp/nanogpt_baseline.json
    python -m benchmarks.nanogpt_baseline --nanogpt /tmp/nanogpt --max_iters 50 --eval_interval 25   # smoke test

(a nanoGPT tree without .git: `git --git-dir=<mirror> archive HEAD | tar -x -C /tmp/nanogpt`)
"""

import argparse
import hashlib
import json
import os
import pickle
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_TEXT = ROOT / "makemore" / "assets" / "tinyshakespeare.txt"
SHARED_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

# nanoGPT README, "I only have a macbook": the CPU command, flag for flag
README_CONFIG = "config/train_shakespeare_char.py"
README_FLAGS = (
    "--device=cpu --compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 "
    "--n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0"
)
DATASET = "shakespeare_char"  # config/train_shakespeare_char.py: dataset = 'shakespeare_char'
OUT_DIR = "out-shakespeare-char"  # config/train_shakespeare_char.py: out_dir
TRAIN_FRACTION = 0.9  # prepare.py: train_data = data[:int(n*0.9)]
NANOGPT_FILES = ("train.py", "model.py", "configurator.py", README_CONFIG)

STEP_LINE = re.compile(r"^step (\d+): train loss ([0-9.]+), val loss ([0-9.]+)$")
ITER_LINE = re.compile(r"^iter (\d+): loss ([0-9.]+), time ([0-9.]+)ms")
CONFIG_INT = re.compile(r"^(\w+) = (\d+)", re.MULTILINE)
THREAD_PROBE = (
    "import numpy, torch; print(torch.get_num_threads(), torch.get_num_interop_threads(), "
    "torch.__version__, numpy.__version__)"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_text() -> Path:
    return SHIPPED_TEXT if SHIPPED_TEXT.exists() else SHARED_TEXT


def readme_command(max_iters: Optional[int], eval_interval: Optional[int]) -> list[str]:
    """The README's arguments to train.py; --max_iters replaces max_iters and lr_decay_iters (the README sets both)."""
    overrides = {}
    if max_iters is not None:
        overrides["max_iters"] = overrides["lr_decay_iters"] = str(max_iters)
    if eval_interval is not None:
        overrides["eval_interval"] = str(eval_interval)
    flags = []
    for flag in README_FLAGS.split():
        key = flag[2:].split("=")[0]
        flags.append(f"--{key}={overrides.pop(key)}" if key in overrides else flag)
    flags += [f"--{key}={value}" for key, value in overrides.items()]
    return ["train.py", README_CONFIG, *flags]


def flag_value(command: list[str], key: str) -> Optional[int]:
    for arg in command:
        if arg.startswith(f"--{key}="):
            return int(arg.split("=", 1)[1])
    return None


def write_shakespeare_char(text_path: Path, data_dir: Path) -> dict:
    """What nanoGPT's data/shakespeare_char/prepare.py writes, from a local text instead of a download."""
    data = text_path.read_text(encoding="utf-8")
    chars = sorted(set(data))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    n = len(data)
    train_ids = np.array([stoi[c] for c in data[: int(n * TRAIN_FRACTION)]], dtype=np.uint16)
    val_ids = np.array([stoi[c] for c in data[int(n * TRAIN_FRACTION) :]], dtype=np.uint16)
    data_dir.mkdir(parents=True, exist_ok=True)
    train_ids.tofile(data_dir / "train.bin")
    val_ids.tofile(data_dir / "val.bin")
    with open(data_dir / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)
    return {
        "text": str(text_path),
        "text_sha256": sha256(text_path),
        "characters": n,
        "vocab_size": len(chars),
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
    }


def scratch_tree(nanogpt: Path, workdir: Path) -> Path:
    """A copy of the nanoGPT tree without .git and data/, so that nothing is written into the checkout."""
    missing = [name for name in NANOGPT_FILES if not (nanogpt / name).is_file()]
    if missing:
        raise SystemExit(f"{nanogpt} is not a nanoGPT tree: no {', '.join(missing)}")
    tree = workdir / "nanoGPT"
    shutil.copytree(nanogpt, tree, ignore=shutil.ignore_patterns(".git", "data", OUT_DIR))
    return tree


def load_average() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_train(
    python: str,
    command: list[str],
    tree: Path,
    env: dict,
    log: Optional[Path],
    quiet: bool,
    until: Optional[Callable[[float, str], bool]] = None,
) -> dict:
    """Run `python COMMAND` in `tree` (train.py, or any script), stamp each line of its output with the seconds since
    the start, and time the process.

    Args:
        until: called with each line's seconds and text; True stops the process there (SIGTERM), and the result's
            "stopped" is True.
    """
    cpu_before = children_cpu_seconds()
    lines = []
    stopped = False
    start = time.perf_counter()
    with subprocess.Popen(
        [python, *command], cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            if not quiet:
                print(line, end="", file=sys.stderr, flush=True)
            if until is not None and not stopped and until(*lines[-1]):
                process.terminate()  # the rest of its output is still read, until it exits
                stopped = True
        returncode = process.wait()
    wall = time.perf_counter() - start
    cpu = children_cpu_seconds() - cpu_before
    if log is not None:
        log.write_text("".join(f"{t:9.3f} {line}\n" for t, line in lines))
    return {"returncode": returncode, "wall_seconds": wall, "cpu_seconds": cpu, "lines": lines, "stopped": stopped}


def summarize(lines: list[tuple[float, str]], eval_interval: int) -> dict:
    evals, iters = [], []
    for elapsed, line in lines:
        if m := STEP_LINE.match(line):
            evals.append(
                {"step": int(m[1]), "train_loss": float(m[2]), "val_loss": float(m[3]), "elapsed_s": round(elapsed, 3)}
            )
        elif m := ITER_LINE.match(line):
            iters.append((int(m[1]), float(m[2]), float(m[3])))
    # train.py's dt of an iteration that starts with an evaluation includes estimate_loss() and the checkpoint
    plain_ms = [ms for it, _, ms in iters if it % eval_interval != 0]
    eval_ms = [ms for it, _, ms in iters if it % eval_interval == 0]
    all_ms = [ms for _, _, ms in iters]
    # the seconds before the training loop: interpreter and torch start-up, data, model and optimizer set-up
    first_iter = next((elapsed for elapsed, line in lines if ITER_LINE.match(line)), None)
    startup = first_iter - iters[0][2] / 1000 if iters else None
    # On a shared machine other processes stretch some iterations many times over (two torch threads on two
    # busy cores wait for each other). Where most iterations ran undisturbed the medians are what a quiet machine
    # gives, and this estimates its wall; under load all along the medians are stretched too (compare them).
    quiet = (
        startup + (statistics.median(plain_ms) * len(plain_ms) + statistics.median(eval_ms) * len(eval_ms)) / 1000
        if plain_ms and eval_ms
        else None
    )
    return {
        "startup_seconds": round(startup, 3) if startup is not None else None,
        "ms_per_eval_iter_median": round(statistics.median(eval_ms), 3) if eval_ms else None,
        "wall_seconds_from_medians": round(quiet, 3) if quiet is not None else None,
        "iterations": len(iters),
        "last_iter": iters[-1][0] if iters else None,
        "last_train_batch_loss": iters[-1][1] if iters else None,
        "ms_per_iter_mean_all": round(statistics.fmean(all_ms), 3) if all_ms else None,
        "ms_per_iter_median_no_eval": round(statistics.median(plain_ms), 3) if plain_ms else None,
        "ms_per_iter_mean_no_eval": round(statistics.fmean(plain_ms), 3) if plain_ms else None,
        "loop_seconds_sum_dt": round(sum(all_ms) / 1000, 3),
        "evals": evals,
        "final_eval": evals[-1] if evals else None,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT tree (train.py, model.py, config/)")
    parser.add_argument("--text", type=Path, default=default_text(), help="tiny shakespeare (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write the JSON result here (default: print it)")
    parser.add_argument("--log", type=Path, help="write train.py's output here, each line stamped with its second")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for train.py (default: torch's own default)")
    parser.add_argument("--max_iters", type=int, help="replaces the README's 2000 (max_iters and lr_decay_iters)")
    parser.add_argument("--eval_interval", type=int, help="replaces the config's 250 (e.g. for a short smoke test)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter for train.py (default: this one)")
    parser.add_argument("--workdir", type=Path, help="keep the scratch tree here (default: a temporary folder)")
    parser.add_argument("--note", default="", help="a free-text note stored in the result (e.g. 'shared machine')")
    parser.add_argument("--quiet", action="store_true", help="do not echo train.py's output to stderr")
    args = parser.parse_args(argv)

    nanogpt = args.nanogpt.resolve()
    command = readme_command(args.max_iters, args.eval_interval)
    config_ints = dict(CONFIG_INT.findall((nanogpt / README_CONFIG).read_text()))
    eval_interval = flag_value(command, "eval_interval") or int(config_ints["eval_interval"])
    max_iters = flag_value(command, "max_iters")
    if max_iters % eval_interval:
        print(f"warning: no evaluation at step {max_iters} (eval_interval {eval_interval})", file=sys.stderr)

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)

    with tempfile.TemporaryDirectory(prefix="nanogpt-baseline-") as tmp:
        workdir = args.workdir.resolve() if args.workdir else Path(tmp)
        tree = scratch_tree(nanogpt, workdir)
        data = write_shakespeare_char(args.text.resolve(), tree / "data" / DATASET)
        probe = subprocess.run(
            [args.python, "-c", THREAD_PROBE], cwd=tree, env=env, capture_output=True, text=True, check=True
        )
        threads, interop_threads, torch_version, numpy_version = probe.stdout.split()
        load_before = load_average()
        run = run_train(args.python, command, tree, env, args.log, args.quiet)
        load_after = load_average()

    summary = summarize(run["lines"], eval_interval)
    result = {
        "what": "nanoGPT train.py, README CPU recipe (shakespeare_char)",
        "command": shlex.join(["python", *command]),
        "cwd": "scratch copy of the nanoGPT tree, data/shakespeare_char written by this script",
        "nanogpt": str(nanogpt),
        "nanogpt_sha256": {name: sha256(nanogpt / name) for name in NANOGPT_FILES},
        "data": data,
        "returncode": run["returncode"],
        "wall_seconds": round(run["wall_seconds"], 3),
        "cpu_seconds": round(run["cpu_seconds"], 3),
        "max_iters": max_iters,
        "eval_interval": eval_interval,
        **summary,
        "final_line": next((line for _, line in reversed(run["lines"]) if STEP_LINE.match(line)), None),
        "torch": torch_version,
        "numpy": numpy_version,
        "python": platform.python_version(),
        "torch_threads": int(threads),
        "torch_interop_threads": int(interop_threads),
        "threads_option": args.threads,
        "machine": {"cpu": cpu_model(), "os.cpu_count": os.cpu_count(), "platform": platform.platform()},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "note": args.note,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    if run["returncode"] != 0:
        print("\n".join(line for _, line in run["lines"][-20:]), file=sys.stderr)
    return run["returncode"]


if __name__ == "__main__":
    sys.exit(main())
