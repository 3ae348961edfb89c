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
import inspect
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
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


def shown(path: Path) -> str:
    """A path for the results: relative to the repository when inside it (results.json is committed); links are kept
    (configs/, a link to makemore/configs, stays configs/)."""
    path = Path(path).absolute()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def config_path(name: str) -> Path:
    """A config by name (configs/NAME.yaml, NAME may hold a subfolder: shakespeare/gpt_cpu) or by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path.absolute()
    path = REPO / "configs" / f"{name}.yaml"
    if not path.exists():
        sys.exit(f"experiments.py: no config {name!r} (looked for {path})")
    return path


def run_name(config: Path) -> str:
    """A run's name: its config's path under configs/ without .yaml (mlp, shakespeare/bigram), so that configs of
    the same file name in different folders get different run folders; a config elsewhere: its file name."""
    config = Path(config).resolve()
    configs = (REPO / "configs").resolve()  # configs/ is a link to makemore/configs
    if config.is_relative_to(configs):
        return config.relative_to(configs).with_suffix("").as_posix()
    return config.stem


def load_yaml(path: Path) -> dict:
    import yaml  # a dependency of jsonargparse

    return yaml.safe_load(path.read_text()) or {}


def package_version() -> dict:
    """The makemore code a run uses: the repository's commit and a hash of makemore/*.py as they are now
    (the package is installed editable, so an edit between runs changes what the next run executes)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "makemore").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"commit": commit, "makemore_sha256": digest.hexdigest()[:16]}


# --- running the CLI -------------------------------------------------------------------------------

CODE_USED: dict[str, dict] = {}  # command label -> package_version() when it started


def makemore(args: list[str], log: Path, label: str) -> float:
    """Run `python -m makemore ARGS` from the repository root, output to `log`; returns its wall time in seconds."""
    CODE_USED[label] = package_version()
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "makemore", *args]
    print(f"$ {shlex.join(['python', '-m', 'makemore', *args])}  (output: {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        code = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
        sys.exit(f"experiments.py: the command failed (exit {code}); the end of {log}:\n" + "\n".join(tail))
    return seconds


def versions(root: Path) -> set[Path]:
    return set((root / "lightning_logs").glob("version_*"))


def new_version(root: Path, before: set[Path]) -> Path:
    """The version_N folder the last command created under root (runs never reuse one)."""
    created = versions(root) - before
    if len(created) != 1:
        sys.exit(
            f"experiments.py: expected one new version folder under {root / 'lightning_logs'}, found {sorted(created)}"
        )
    return created.pop()


def shortened(config: dict, max_steps: int) -> list[str]:
    """CLI overrides for a smoke run: max_steps, and validation at the configs' rate (20 times per run)."""
    full = config.get("trainer", {}).get("max_steps") or max_steps
    per_epoch = config.get("data", {}).get("val_every_n_steps") or full
    every = max(1, round(per_epoch * max_steps / full))
    return ["--trainer.max_steps", str(max_steps), "--data.val_every_n_steps", str(every)]


# --- reading the runs back -------------------------------------------------------------------------


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar tag in a run folder's TensorBoard events, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        sys.exit(f"experiments.py: no {tag!r} in the TensorBoard events of {run_dir}")
    return [(event.step, event.value) for event in events.Scalars(tag)]


def best_checkpoint(fit_dir: Path) -> Path:
    """The best (lowest val_loss) checkpoint, as the fit's ModelCheckpoint recorded it in last.ckpt."""
    from makemore.checkpoint import read_checkpoint

    last = read_checkpoint(str(fit_dir / "checkpoints" / "last.ckpt"))
    for key, state in last.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and state.get("monitor") == "val_loss" and state.get("best_model_path"):
            return Path(state["best_model_path"])
    # Not recorded there: the one checkpoint named after its val_loss (ModelCheckpoint keeps the best only).
    named = sorted(fit_dir.glob("checkpoints/*val_loss=*.ckpt"))
    if len(named) == 1:
        return named[0]
    sys.exit(f"experiments.py: {fit_dir} has no best checkpoint (did the run validate at all?)")


def datamodule_for(checkpoint: dict):
    """The CharDataModule with the options the checkpoint was trained with, set up."""
    from makemore.data import CharDataModule

    options = checkpoint["datamodule_hyper_parameters"]
    accepted = inspect.signature(CharDataModule).parameters
    options = {key: value for key, value in options.items() if key in accepted}  # the CLI adds _instantiator
    if options.get("path") and not Path(options["path"]).is_absolute():
        options["path"] = str(REPO / options["path"])  # the CLI ran from the repository root
    data = CharDataModule(**options)
    data.setup("fit")
    return data


def window_nll(net, data, split: str) -> float:
    """The mean negative log-likelihood, in nats, of a text's split by the text metric, as validation computes it
    (data.EvalWindows, MakemoreModule._scored): each character once, from the characters before it in its window of
    block_size. A sequence network reads each window once: no N x block_size tensor, no forward per character."""
    from makemore.models import batches_nll

    return batches_nll(net, data.whole_split(split), data.hparams.block_size)


def evaluate(best: Path, data=None) -> dict:
    """Parameters, shape and the full-split train (and, as a check, val) loss of a checkpoint; `data`: its
    datamodule_for, if already built. A text is scored by its own metric (window_nll), on the GPU if there is one
    (as its fit ran: accelerator auto); a word list's examples one by one, on the CPU."""
    import torch

    from makemore.checkpoint import read_checkpoint
    from makemore.models import split_nll
    from makemore.module import load_checkpoint

    checkpoint = read_checkpoint(str(best))
    module = load_checkpoint(str(best)).eval()
    data = datamodule_for(checkpoint) if data is None else data
    hp = module.hparams
    if data.hparams.format == "text":
        net = module.net.to("cuda" if torch.cuda.is_available() else "cpu")
        train, val = window_nll(net, data, "train"), window_nll(net, data, "val")
        module.cpu()
    else:
        train = split_nll(module.net, *data.examples["train"].tensors(), batch_size=32768)
        val = split_nll(module.net, *data.examples["val"].tensors(), batch_size=32768)
    return {
        "module": module,
        "block_size": hp.block_size,
        "n_embd": hp.net["init_args"].get("n_embd"),
        "n_hidden": hp.net["init_args"].get("n_hidden"),
        "params": sum(p.numel() for p in module.parameters()),
        "best_step": checkpoint["global_step"],
        "train": train,
        "val_recomputed": val,
        "train_examples": len(data.examples["train"]),
    }


def run_experiment(config: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    """Fit `config`, test its best checkpoint (when its split has a test share: a text's may not) and read the
    numbers back; test is None where there is no test split."""
    from makemore.checkpoint import read_checkpoint

    name = run_name(config)
    root = (args.root / name).resolve()
    overrides = extra + (shortened(load_yaml(config), args.max_steps) if args.max_steps else [])

    expected = args.max_steps or load_yaml(config).get("trainer", {}).get("max_steps")
    before = versions(root)
    wall = makemore(
        ["fit", "--config", str(config), "--trainer.default_root_dir", str(root), *overrides],
        root / "fit.log",
        f"{name} fit",
    )
    fit_dir = new_version(root, before)
    # A fit sent SIGTERM stops at the next batch and exits with status 0 (Lightning's SIGTERMException is a
    # SystemExit without a code): only the step count tells a finished run from an interrupted one.
    steps = scalars(fit_dir, "train_loss")[-1][0]  # the SGD step of the last training log: steps trained
    if expected and steps != expected:
        sys.exit(
            f"experiments.py: {name}: the fit stopped at SGD step {steps:,} of {expected:,} with exit status 0"
            f" (was it sent SIGTERM?); see {root / 'fit.log'}"
        )
    best = best_checkpoint(fit_dir)
    data = datamodule_for(read_checkpoint(str(best)))  # the run's own data options, from its checkpoint

    # A text split as the lecture splits it (train_fraction + val_fraction = 1) has no test share: `makemore test`
    # refuses it, and test is None.
    test_dir = None
    if "test" in data.examples:
        before = versions(root)
        test_args = ["--trainer.default_root_dir", str(root), *extra, "--ckpt_path", str(best)]
        makemore(["test", "--config", str(config), *test_args], root / "test.log", f"{name} test")
        if versions(root) != before:
            sys.exit(f"experiments.py: {name}: test made a new run folder; it should log into the run it evaluates")
        test_dir = fit_dir  # `test` of a run's checkpoint logs into that run's folder
    else:
        print(f"{name}: the split has no test share (data.train_fraction + data.val_fraction = 1): no test", flush=True)

    result = evaluate(best, data)
    module = result.pop("module")
    val_curve = scalars(fit_dir, "val_loss")
    at_best = [value for step, value in val_curve if step == result["best_step"]]
    if not at_best:
        sys.exit(f"experiments.py: no val_loss logged at the best checkpoint's step {result['best_step']} in {fit_dir}")
    val = at_best[-1]
    # The train loss is computed here, the val loss was logged by the run: recomputing the val loss here
    # too must give the logged number, or this process did not rebuild the run's data and model.
    if not math.isclose(val, result["val_recomputed"], rel_tol=1e-4, abs_tol=1e-5):
        sys.exit(f"experiments.py: {name}: logged val_loss {val} but {result['val_recomputed']} recomputed from {best}")
    test = scalars(test_dir, "test_loss")[-1][1] if test_dir is not None else None
    print(
        f"{name}: train {result['train']:.4f}  val {val:.4f}  test {'none' if test is None else f'{test:.4f}'}"
        f"  params {result['params']}"
        f"  steps {steps}  fit {wall:.0f} s",
        flush=True,
    )
    return {
        "config": name,
        "config_path": shown(config),
        **result,
        "steps": steps,
        "val": val,
        "test": test,
        "wall_time_s": wall,
        "package": CODE_USED[f"{name} fit"],
        "val_curve": val_curve,
        "fit_dir": shown(fit_dir),
        "test_dir": None if test_dir is None else shown(test_dir),
        "best_checkpoint": shown(best),
        "_embedding": module.net.embedding.weight.detach().clone() if hasattr(module.net, "embedding") else None,
        "_vocab": module.hparams.vocab,
    }


def run_lr_find(args: argparse.Namespace, extra: list[str]) -> dict:
    config = config_path(LR_FIND_CONFIG)
    root = (args.root / "lr_find").resolve()
    options = extra + (["--num_training", str(min(1000, args.max_steps))] if args.max_steps else [])
    before = versions(root)
    makemore(
        ["lr_find", "--config", str(config), "--trainer.default_root_dir", str(root), *options],
        root / "lr_find.log",
        "lr_find",
    )
    run_dir = new_version(root, before)
    found = re.findall(r"suggested learning rate: (\S+)", (root / "lr_find.log").read_text(errors="replace"))
    plot = run_dir / "lr_find.png"
    if not plot.exists():
        sys.exit(f"experiments.py: the learning-rate finder wrote no {plot}")
    return {"config": shown(config), "suggestion": float(found[-1]) if found else None, "plot": shown(plot)}


# --- writing the results ---------------------------------------------------------------------------


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


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
                "code_used": CODE_USED,
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
    hashes = {code["makemore_sha256"] for code in CODE_USED.values()}
    if len(hashes) == 1:
        code = next(iter(CODE_USED.values()))
        lines.append(
            f"- Every command above ran the same makemore code (commit {code['commit']},"
            f" makemore/*.py sha256 {code['makemore_sha256']})."
        )
    else:
        lines.append(
            "- **Warning: makemore/*.py changed between these commands**, so they are not strictly"
            " comparable (makemore/*.py sha256 when each started): "
            + ", ".join(f"{label} {code['makemore_sha256']}" for label, code in CODE_USED.items())
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
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/experiments.py", *(sys.argv[1:] if argv is None else argv)])
    configs = [config_path(name) for name in args.configs]
    args.root, args.docs = args.root.resolve(), args.docs.resolve()
    extra = ["--data.path", str(args.data_path.resolve())] if args.data_path else []

    runs = [run_experiment(config, args, extra) for config in configs]
    lr_find = None if args.no_lr_find else run_lr_find(args, extra)
    text = write_results(runs, lr_find, args, command)
    print()
    print(text)
    print(f"\nwritten: {args.docs / 'results.md'}, {args.docs / 'results.json'} and the plots in {args.docs}")


if __name__ == "__main__":
    main()
