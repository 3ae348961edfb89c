#!/usr/bin/env python
"""Train every model of the lecture ladder with several seeds and write the leaderboard.

    nice python scripts/leaderboard.py                        # every ladder config, seeds 0 1 2
    python scripts/leaderboard.py --models gru --seeds 0      # one piece, merged into the table
    python scripts/leaderboard.py --table                     # only rewrite the table, plot and README
    python scripts/leaderboard.py --models bigram mlp --seeds 0 --max_steps 200 \\
        --root /tmp/lb --docs /tmp/lb/docs --readme none     # a smoke run

Each (model, seed) runs exactly what a user types, in subprocesses (scripts/experiments.py does the running
and the reading back):

    python -m makemore fit  --config configs/MODEL.yaml --seed_everything SEED --data.batch_seed SEED
    python -m makemore test --config configs/MODEL.yaml ... --ckpt_path BEST

The seed sets the initial weights and the mini-batches; the split is the configs' (data.seed 42) for every
run. Every number is read back from what the runs left: val from the best checkpoint's logged val_loss
(selected on validation only), test from the test_loss the one test run logged, train by evaluating the best
checkpoint on the whole train split with the same metric (each character and word end once, in nats). The
bigram's anchor is computed here in closed form: the counting bigram with +1 smoothing on the same train split.

Results are merged by (model, seed) into --docs/leaderboard.json; leaderboard.md and leaderboard.png (the
validation curves) are rewritten from all of it, and the table goes into README.md between its
`<!-- leaderboard -->` markers. Each run records a fingerprint of its settings (the parsed config and
--max_steps): a model's row averages only the seeds that share its newest run's settings, and names the
others to rerun, so a changed config never mixes into an old mean.
"""

import argparse
import hashlib
import json
import math
import os
import shlex
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import experiments  # noqa: E402

REPO = experiments.REPO
# name -> (anchor val loss or None, its source); the order of the ladder. The bigram's anchor is computed.
LADDER = {
    "bigram": (None, "the counting bigram with +1 smoothing on the same train split, in closed form"),
    "mlp": (2.17, "lecture part 2, val"),
    "mlp_batchnorm": (2.105, "lecture part 3, final log, val"),
    "wavenet": (1.993, "lecture part 5, val"),
    "rnn": (None, "none published"),
    "gru": (None, "none published"),
    "lstm": (None, "none published"),
    "bow": (None, "none published"),
    "transformer": (1.92, "makemore.py's README: test loss on its own 1,000-word test set, from 10 batches"),
    "transformer_long": (1.92, "as transformer; this config needs a GPU for the 20-minute budget"),
    "transformer_ensemble": (1.90, "the ladder's goal for its best model, below every names.txt number we know of"),
}
MARKERS = ("<!-- leaderboard -->", "<!-- /leaderboard -->")
SEEDS = [0, 1, 2]  # a full row: the anchors are goals for the mean over this many seeds


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--models", nargs="+", default=list(LADDER), choices=list(LADDER), help="default: all")
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS, help=f"default: {' '.join(map(str, SEEDS))}")
    parser.add_argument("--max_steps", type=int, default=None, help="shorten every run (a smoke run)")
    parser.add_argument("--table", action="store_true", help="run nothing: rewrite the outputs from the JSON")
    parser.add_argument("--root", type=Path, default=REPO / "lightning_logs" / "leaderboard", help="run folders")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where leaderboard.md/.json/.png go")
    parser.add_argument("--readme", default=str(REPO / "README.md"), help="README to update, or none")
    return parser.parse_args(argv)


def device() -> str:
    import torch

    if torch.cuda.is_available():  # the configs say accelerator: auto
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def bigram_anchor(best: Path) -> float:
    """Val loss of the counting bigram (+1 smoothing) fitted on the run's own train split, in closed form."""
    from makemore.checkpoint import read_checkpoint
    from makemore.models import Bigram, split_nll

    data = experiments.datamodule_for(read_checkpoint(str(best)))
    counts = Bigram.from_counts(*data.examples["train"].tensors(), len(data.vocabulary))
    return split_nll(counts, *data.examples["val"].tensors())


def settings(config: Path, max_steps: Optional[int]) -> str:
    """A fingerprint of what a run of `config` trains: its parsed YAML (comments do not count) and --max_steps."""
    canonical = json.dumps({"config": experiments.load_yaml(config), "max_steps": max_steps}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def current(runs: dict[str, dict]) -> tuple[dict[str, dict], dict[str, list[int]]]:
    """The runs a table may average, and per model the seeds left out: those whose settings differ from the
    model's newest run (its config changed since, or a --max_steps smoke run). A mean never mixes settings."""
    kept, stale = {}, {}
    for model in LADDER:
        mine = {key: r for key, r in runs.items() if r["model"] == model}
        if not mine:
            continue
        newest = max(mine.values(), key=lambda r: r["date"])["settings"]
        for key, r in mine.items():
            if r["settings"] == newest:
                kept[key] = r
            else:
                stale.setdefault(model, []).append(r["seed"])
    return kept, {model: sorted(seeds) for model, seeds in stale.items()}


def run(model: str, seed: int, args: argparse.Namespace) -> dict:
    config = experiments.config_path(model)
    options = argparse.Namespace(root=(args.root / f"seed_{seed}").resolve(), max_steps=args.max_steps)
    result = experiments.run_experiment(
        config, options, ["--seed_everything", str(seed), "--data.batch_seed", str(seed)]
    )
    yaml = experiments.load_yaml(config)
    entry = {
        key: value for key, value in result.items() if not key.startswith("_") and key not in ("n_embd", "n_hidden")
    }
    entry.update(
        model=model,
        seed=seed,
        batch_size=yaml.get("data", {}).get("batch_size", 32),
        device=device(),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=shlex.join(["python", "scripts/leaderboard.py", "--models", model, "--seeds", str(seed)]),
        settings=settings(config, args.max_steps),
    )
    if model == "bigram":
        entry["anchor"] = bigram_anchor(REPO / entry["best_checkpoint"])
    return entry


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def summary(runs: dict[str, dict]) -> list[dict]:
    """One row per model of the ladder that has runs: means and standard deviations over its seeds."""
    rows = []
    for model, (anchor, source) in LADDER.items():
        mine = sorted((r for r in runs.values() if r["model"] == model), key=lambda r: r["seed"])
        if not mine:
            continue
        if anchor is None and model == "bigram":
            anchor = statistics.mean(r["anchor"] for r in mine)
        val = statistics.mean(r["val"] for r in mine)
        rows.append(
            {
                "model": model,
                "config": mine[0]["config_path"],
                "seeds": [r["seed"] for r in mine],
                "params": mine[0]["params"],
                "steps": mine[0]["steps"],
                "batch_size": mine[0]["batch_size"],
                "train": [r["train"] for r in mine],
                "val": [r["val"] for r in mine],
                "test": [r["test"] for r in mine],
                "val_mean": val,
                "test_bpc": statistics.mean(r["test"] for r in mine) / math.log(2),
                "wall_time_s": statistics.mean(r["wall_time_s"] for r in mine),
                "device": ", ".join(sorted({r["device"] for r in mine})),
                "anchor": anchor,
                "anchor_source": source,
                "met": None if anchor is None else (abs(val - anchor) <= 0.01 if model == "bigram" else val <= anchor),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    head = [
        "model",
        "params",
        "steps × batch",
        "train",
        "val",
        "test",
        "test bits/char",
        "fit time",
        "device",
        "anchor (val)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["anchor"] is None:
            anchor = r["anchor_source"]
        else:
            goal = "val within 0.01" if r["model"] == "bigram" else "val at or below"
            anchor = f"{r['anchor']:.4f}: {r['anchor_source']}; {goal}: {verdict(r)}"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"[`{r['model']}`]({os.path.relpath(REPO / r['config'], REPO / 'docs')})",
                    f"{r['params']:,}",
                    f"{r['steps']:,} × {r['batch_size']}",
                    mean_std(r["train"]),
                    mean_std(r["val"]),
                    mean_std(r["test"]),
                    f"{r['test_bpc']:.3f}",
                    experiments.minutes(r["wall_time_s"]),
                    r["device"],
                    anchor,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def seed_count(n: int) -> str:
    return f"{n} seed{'s' if n > 1 else ''}"


def verdict(row: dict) -> str:
    """Whether a row's mean meets its anchor; with fewer seeds than a full row, on how many (not yet the goal)."""
    met = "met" if row["met"] else "not met"
    n = len(row["seeds"])
    return met if n >= len(SEEDS) else f"{met} on {seed_count(n)} of {len(SEEDS)}"


def readme_table(rows: list[dict]) -> str:
    """The README's short form of the table: the numbers to compare, with the anchor and whether it is met."""
    lines = ["| model | params | val | test | test bits/char | anchor |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        anchor = "none published"
        if r["anchor"] is not None:
            anchor = f"{r['anchor']:.3f}: {verdict(r)}"
        lines.append(
            f"| `{r['model']}` ({seed_count(len(r['seeds']))}) | {r['params']:,} | {statistics.mean(r['val']):.4f}"
            f" | {statistics.mean(r['test']):.4f} | {r['test_bpc']:.3f} | {anchor} |"
        )
    return "\n".join(lines)


def plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    colours = plt.get_cmap("tab20")  # a colour per model: the ladder has more than ten
    for i, model in enumerate(LADDER):
        for j, r in enumerate(sorted((r for r in runs.values() if r["model"] == model), key=lambda r: r["seed"])):
            steps, values = zip(*r["val_curve"])
            ax.plot(steps, values, color=colours(i), alpha=0.8, label=model if j == 0 else None)
    ax.set_xlabel("SGD step")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title("validation loss of every ladder run (one line per seed)")
    ax.set_ylim(top=2.6)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write(runs: dict[str, dict], args: argparse.Namespace) -> tuple[str, dict[str, list[int]]]:
    """Rewrite the JSON, table, plot and README from `runs`; the table's text and the seeds it left out."""
    args.docs.mkdir(parents=True, exist_ok=True)
    kept, stale = current(runs)
    rows = summary(kept)
    text = table(rows)
    (args.docs / "leaderboard.json").write_text(json.dumps({"runs": runs, "summary": rows}, indent=2) + "\n")
    plot(kept, args.docs / "leaderboard.png")
    left_out = [
        f"- **left out**: `{model}` seed{'s' if len(seeds) > 1 else ''} {' '.join(map(str, seeds))} ran other"
        " settings than its newest run (its config changed since, or a shortened run): rerun them with"
        f" `python scripts/leaderboard.py --models {model} --seeds {' '.join(map(str, seeds))}`."
        for model, seeds in stale.items()
    ]
    seeds = sorted({len(r["seeds"]) for r in rows})
    lines = [
        "# The ladder: every model on one split, one metric",
        "",
        "Written by `python scripts/leaderboard.py` from the runs it made (each row's runs and commands are in"
        " [leaderboard.json](leaderboard.json)); nothing typed in. Numbers are mean ± standard deviation over"
        f" the seeds ({'/'.join(map(str, seeds))} per model), each seed a fresh initialisation and mini-batch order"
        " on the lecture's split (names.txt, data.seed 42, 80/10/10).",
        "",
        text,
        "",
        "- **train / val / test**: the mean negative log-likelihood, in nats, of every character and word end of"
        " the split, each once, whatever the model (sequence models are scored on their prediction after each"
        " character's context window, the same events). **val** is the best checkpoint's (selected on validation"
        " only); **test** was evaluated once per run, on that checkpoint; **train** evaluated by the script on that"
        " checkpoint. **test bits/char**: the mean test loss / ln 2.",
        "- **steps × batch**: SGD steps and examples per step (for sequence models trained on whole words, words"
        " per step). **fit time**: the `python -m makemore fit` process, start to exit (m:ss), mean over seeds; it"
        " depends on what else the machine runs.",
        "- **anchor**: the number each model is compared with, and where it comes from. The bigram's is computed"
        " here in closed form on the same train split; the others are other setups' numbers (their own splits;"
        " makemore.py's is a test loss), so they are guides, not exact matches.",
        *left_out,
        "",
        "![validation curves](leaderboard.png)",
        "",
    ]
    (args.docs / "leaderboard.md").write_text("\n".join(lines))
    if args.readme != "none":
        readme = Path(args.readme)
        content = readme.read_text()
        start, end = (content.find(marker) for marker in MARKERS)
        if start < 0 or end < start:
            sys.exit(f"leaderboard.py: {readme} has no {MARKERS[0]} ... {MARKERS[1]} block for the table")
        readme.write_text(content[: start + len(MARKERS[0])] + "\n" + readme_table(rows) + "\n" + content[end:])
    return text, stale


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    args.docs = args.docs.resolve()
    path = args.docs / "leaderboard.json"

    def recorded() -> dict:
        return json.loads(path.read_text())["runs"] if path.exists() else {}

    if not args.table:
        for model in args.models:
            for seed in args.seeds:
                result = run(model, seed, args)
                # Merged into what the file holds now, after every run: a long session that stops keeps what it
                # finished, and pieces run side by side (other models, other seeds) keep each other's results.
                write({**recorded(), f"{model}/{seed}": result}, args)
    text, stale = write(recorded(), args)
    print(text)
    for model, seeds in stale.items():
        print(f"left out of the table: {model} seeds {seeds} (other settings than its newest run)", file=sys.stderr)
    print(f"\nwritten: {args.docs / 'leaderboard.md'}, leaderboard.json, leaderboard.png", file=sys.stderr)


if __name__ == "__main__":
    main()
