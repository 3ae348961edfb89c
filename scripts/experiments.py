#!/usr/bin/env python
"""Run the lecture's MLP experiments through the real CLI and write the results table and plots.

    nice python scripts/experiments.py                 # the five 200,000-step runs, one after another
    python scripts/experiments.py --max_steps 100 \\
        --configs mlp_embd2 mlp --root /tmp/smoke --docs /tmp/smoke/docs   # a smoke run

For each config it runs, in subprocesses, exactly what a user would type:

    python -m makemore fit  --config configs/NAME.yaml --trainer.default_root_dir ROOT/NAME
    python -m makemore test --config configs/NAME.yaml --trainer.default_root_dir ROOT/NAME --ckpt_path BEST

timing the fit, then reads every number back from what the runs left behind: the validation curve and
the best checkpoint's val_loss from the fit's TensorBoard events, test_loss from the events the test adds to the run's folder, and
the loss on the whole train split by evaluating the best checkpoint in this process (its own data
options, from the checkpoint). It also runs `python -m makemore lr_find --config configs/mlp.yaml`.
A text config (data.format text) is scored by the text metric, train included (docs/text.md); where its split
has no test share (the lecture's 90/10), test is not run and its test is none.

Written to --docs (default docs/): results.md (a Markdown table, with the command that produced it),
results.json, val_loss.png (all validation curves, x = SGD step), embeddings_2d.png (the 2-D character
embeddings of the first run with n_embd 2, normally mlp_embd2) and lr_find.png (the finder's plot).
Each run's output (logs, checkpoints, TensorBoard events) stays under --root, default
lightning_logs/experiments; a run's folder is never deleted: new runs are new version_N folders.
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from makemore.errors import MakemoreError
from makemore.runs import RunError, Runner, config_path, minutes, new_version, shown, versions

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"  # a link to makemore/configs: results name configs/NAME.yaml
RUNNER = Runner(REPO)  # every command runs from the repository root, as the docs show them
DEFAULT_CONFIGS = ["mlp_embd2", "mlp_hidden300", "mlp", "mlp_block5", "mlp_block8"]
LR_FIND_CONFIG = "mlp"
COLUMNS = ["config", "block_size", "n_embd", "n_hidden", "params", "steps", "train", "val", "test", "wall time"]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=DEFAULT_CONFIGS,
        help="config names in configs/ (without .yaml) or paths to YAML files; default: %(default)s",
    )
    parser.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="shorten every run to this many SGD steps (a smoke run); validation then runs every"
        " max_steps/20 steps, as 10,000 of 200,000 in the configs",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO / "lightning_logs" / "experiments",
        help="folder for the runs' logs, checkpoints and events; default: %(default)s",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=REPO / "docs",
        help="folder for results.md, results.json and the PNGs; default: %(default)s",
    )
    parser.add_argument(
        "--data_path",
        type=Path,
        default=None,
        help="word list passed to every run as --data.path (default: the configs' own, names.txt)",
    )
    parser.add_argument("--no_lr_find", action="store_true", help="skip the learning-rate finder run and lr_find.png")
    args = parser.parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        parser.error("--max_steps must be at least 1")
    return args


def run_lr_find(args: argparse.Namespace, extra: list[str]) -> dict:
    config = config_path(LR_FIND_CONFIG, CONFIGS)
    root = (args.root / "lr_find").resolve()
    options = extra + (["--num_training", str(min(1000, args.max_steps))] if args.max_steps else [])
    before = versions(root)
    RUNNER.makemore(
        ["lr_find", "--config", str(config), "--trainer.default_root_dir", str(root), *options],
        root / "lr_find.log",
        "lr_find",
    )
    run_dir = new_version(root, before)
    found = re.findall(r"suggested learning rate: (\S+)", (root / "lr_find.log").read_text(errors="replace"))
    plot = run_dir / "lr_find.png"
    if not plot.exists():
        raise RunError(f"the learning-rate finder wrote no {plot}")
    return {"config": shown(config, REPO), "suggestion": float(found[-1]) if found else None, "plot": shown(plot, REPO)}


# --- writing the results ---------------------------------------------------------------------------


def table(runs: list[dict]) -> str:
    rows = [COLUMNS, ["---"] * len(COLUMNS)]
    for r in runs:
        rows.append(
            [
                f"`{r['config']}`",
                str(r["block_size"]),
                str(r["n_embd"]),
                str(r["n_hidden"]),
                f"{r['params']:,}",
                f"{r['steps']:,}",
                f"{r['train']:.4f}",
                f"{r['val']:.4f}",
                "—" if r["test"] is None else f"{r['test']:.4f}",
                minutes(r["wall_time_s"]),
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def plot_val_curves(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in runs:
        steps, values = zip(*r["val_curve"])
        ax.plot(
            steps,
            values,
            marker="o",
            markersize=3,
            label=f"{r['config']} (block {r['block_size']}, embd {r['n_embd']}, hidden {r['n_hidden']})",
        )
    ax.set_xlabel("SGD step")
    ax.set_ylabel("validation loss (cross-entropy, nats)")
    ax.set_title("validation loss of each run")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_embeddings(run: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from makemore.callbacks import embedding_figure

    fig = embedding_figure(run["_embedding"], list(run["_vocab"]))
    fig.axes[0].set_title(f"character embeddings: {run['config']}, step {run['best_step']:,}")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(runs: list[dict], lr_find: Optional[dict], args: argparse.Namespace, command: str) -> str:
    import lightning
    import torch

    docs = args.docs
    docs.mkdir(parents=True, exist_ok=True)
    environment = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    plots = {"val_loss": "val_loss.png"}
    plot_val_curves(runs, docs / "val_loss.png")
    embd2 = next((r for r in runs if r["n_embd"] == 2), None)
    if embd2 is not None:
        plot_embeddings(embd2, docs / "embeddings_2d.png")
        plots["embeddings_2d"] = "embeddings_2d.png"
    if lr_find is not None:
        shutil.copyfile(REPO / lr_find["plot"], docs / "lr_find.png")  # REPO / an absolute path is that path
        plots["lr_find"] = "lr_find.png"

    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]
    (docs / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "environment": environment,
                "runs": public,
                "lr_find": lr_find,
                "plots": plots,
                "code_used": RUNNER.code_used,
            },
            indent=2,
        )
        + "\n"
    )

    text = table(runs)
    lines = [
        "# Results of the lecture's experiments",
        "",
        f"Produced by `{command}` on {environment['date']} ({environment['cpu_count']} CPU cores,"
        f" torch {environment['torch']}, lightning {environment['lightning']}). Every number below was read back"
        " from the runs; nothing was typed in.",
        "",
        text,
        "",
        "- **train**: loss (mean cross-entropy, nats) of the best checkpoint over the whole train split,"
        " evaluated by the script; **val**: the best checkpoint's logged `val_loss`; **test**: `test_loss` logged by"
        " `python -m makemore test --ckpt_path <best checkpoint>`.",
        "- **params**: parameters of the loaded model; **steps**: SGD steps trained (batches of 32).",
        "- **wall time**: the `python -m makemore fit` subprocess, start to exit (m:ss), on this machine;"
        " it depends on what else the CPU is doing.",
    ]
    hashes = {code["makemore_sha256"] for code in RUNNER.code_used.values()}
    if len(hashes) == 1:
        code = next(iter(RUNNER.code_used.values()))
        lines.append(
            f"- Every command above ran the same makemore code (commit {code['commit']},"
            f" makemore/*.py sha256 {code['makemore_sha256']})."
        )
    else:
        lines.append(
            "- **Warning: makemore/*.py changed between these commands**, so they are not strictly"
            " comparable (makemore/*.py sha256 when each started): "
            + ", ".join(f"{label} {code['makemore_sha256']}" for label, code in RUNNER.code_used.items())
            + "."
        )
        print("experiments.py: warning: makemore/*.py changed between the commands (see results.md)", file=sys.stderr)
    best_steps = [f"`{r['config']}` at step {r['best_step']:,}" for r in runs if r["best_step"] != r["steps"]]
    if best_steps:
        lines.append("- The best checkpoint is not the last for: " + ", ".join(best_steps) + ".")
    if lr_find is not None:
        suggestion = f"{lr_find['suggestion']:.3g}" if lr_find["suggestion"] is not None else "none"
        lines.append(
            f"- Learning-rate finder on `{lr_find['config']}`: suggested learning rate {suggestion} (`lr_find.png`)."
        )
    lines += [
        "",
        "Plots: " + ", ".join(f"[{name}]({file})" for name, file in plots.items()) + "; all numbers also in"
        " [results.json](results.json).",
        "",
    ]
    for name, file in plots.items():
        lines += [f"![{name}]({file})", ""]
    (docs / "results.md").write_text("\n".join(lines))
    return text


def main(argv: Optional[list[str]] = None) -> None:
    try:
        experiments(argv)
    except MakemoreError as error:  # a run that went wrong (makemore.runs.RunError) or a checkpoint that is not there
        sys.exit(f"experiments.py: {error}")


def experiments(argv: Optional[list[str]]) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/experiments.py", *(sys.argv[1:] if argv is None else argv)])
    configs = [config_path(name, CONFIGS) for name in args.configs]
    args.root, args.docs = args.root.resolve(), args.docs.resolve()
    extra = ["--data.path", str(args.data_path.resolve())] if args.data_path else []

    runs = [RUNNER.fit_and_test(config, args.root, args.max_steps, extra) for config in configs]
    lr_find = None if args.no_lr_find else run_lr_find(args, extra)
    text = write_results(runs, lr_find, args, command)
    print()
    print(text)
    print(f"\nwritten: {args.docs / 'results.md'}, {args.docs / 'results.json'} and the plots in {args.docs}")


if __name__ == "__main__":
    main()
