"""Memory and start-up against the size of the corpus: generated texts and word lists, each trained for a few SGD steps.

Each corpus is written to a scratch folder, then trained on by `python -m makemore fit` in a process of its own,
as a user runs it:

  text   configs/shakespeare/gpt_cpu.yaml at data.block_size 256 on a text of N characters (tiny shakespeare's lines,
         shuffled and repeated to N characters)
  words  configs/mlp.yaml on a word list of N words (made-up names of 1 to 4 syllables)

and the table gives the process's peak resident memory (its maximum RSS, model and Lightning included), the
seconds from its start to the start of training (reading, vocabulary, split, fingerprint, examples, model), and
the seconds to train the steps. Validation is off (trainer.limit_val_batches 0): a validation's time is that of
the split, not of start-up.

    python -m benchmarks.scale                                      # text 1M, 10M, 100M characters; 100K, 1M, 10M words
    python -m benchmarks.scale --text 1000000 --words 100000 --steps 2   # a quick run
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parent.parent  # the checkout: each fit runs there, where it imports benchmarks.scale
SYLLABLES = ["ma", "ri", "an", "el", "jo", "na", "lie", "so", "be", "th", "ka", "lu", "de", "vi", "or", "sa"]


class TrainStart(L.Callback):
    """Prints the wall-clock time (time.time()) when training starts and when it ends."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        print(f"scale: train start {time.time():.3f}", flush=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        print(f"scale: train end {time.time():.3f}", flush=True)


def write_text(path: Path, chars: int, seed: int = 0) -> None:
    """A text of `chars` characters: tiny shakespeare's lines in a random order, repeated."""
    from makemore.formats import default_path

    lines = default_path("text").read_text(encoding="utf-8").splitlines(keepends=True)
    rng = random.Random(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < chars:
            rng.shuffle(lines)
            for line in lines:
                line = line[: chars - written]
                out.write(line)
                written += len(line)
                if written >= chars:
                    break


def write_words(path: Path, words: int, seed: int = 0) -> None:
    """`words` made-up names of 1 to 4 syllables, one a line."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(words):
            out.write("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) + "\n")


def fit(args: list[str], workdir: Path) -> dict:
    """Run `python -m makemore fit ARGS` with TrainStart; its peak RSS (MiB) and timings (s)."""
    command = [sys.executable, "-m", "makemore", "fit", *args, "--trainer.callbacks+=benchmarks.scale.TrainStart"]
    command += ["--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false"]
    command += ["--trainer.default_root_dir", str(workdir), "--trainer.accelerator", "cpu"]
    log = workdir.with_suffix(".log")
    start = time.time()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS (reaped here, not by Popen)
    output = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    stamps = {
        key: float(line.rsplit(" ", 1)[1])
        for line in output.splitlines()
        for key in ("start", "end")
        if line.startswith(f"scale: train {key} ")
    }
    return {
        "peak_mib": usage.ru_maxrss / 1024,
        "to_training_s": stamps["start"] - start,
        "training_s": stamps["end"] - stamps["start"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", nargs="*", type=int, default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--words", nargs="*", type=int, default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--steps", type=int, default=5, help="SGD steps of each fit (default 5)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="makemore-scale-") as tmp:
        work = Path(tmp)
        runs = [("text", n) for n in args.text] + [("words", n) for n in args.words]
        for kind, n in runs:
            corpus = work / f"{kind}_{n}.txt"
            (write_text if kind == "text" else write_words)(corpus, n)
            size = corpus.stat().st_size
            if kind == "text":
                options = ["--config", str(ROOT / "configs/shakespeare/gpt_cpu.yaml"), "--data.block_size", "256"]
            else:
                options = ["--config", str(ROOT / "configs/mlp.yaml")]
            options += ["--data.path", str(corpus), "--trainer.max_steps", str(args.steps)]
            result = fit(options, work / f"run_{kind}_{n}")
            corpus.unlink()
            rows.append((kind, n, size, result))
            print(f"  {kind} {n:,}: {result}", flush=True)
    print(f"\n{args.steps} SGD steps per fit, validation off; peak RSS of the fit process\n")
    print("| corpus | size | file MB | peak memory MiB | start to training s | training s |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, n, size, r in rows:
        unit = "characters" if kind == "text" else "words"
        print(
            f"| {kind} | {n:,} {unit} | {size / 1e6:.1f} | {r['peak_mib']:.0f} | {r['to_training_s']:.1f}"
            f" | {r['training_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
