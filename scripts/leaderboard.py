#!/usr/bin/env python
"""Train every model of the lecture ladder with several seeds and write the leaderboard.

    nice python scripts/leaderboard.py                        # every ladder config, seeds 0 1 2
    python scripts/leaderboard.py --models gru --seeds 0      # one piece, merged into the table
    python scripts/leaderboard.py --table                     # only rewrite the table, plot and README
    python scripts/leaderboard.py --models bigram mlp --seeds 0 --max_steps 200 \\
        --root /tmp/lb --docs /tmp/lb/docs --readme none     # a smoke run
    nice python scripts/leaderboard.py --models shakespeare/bigram shakespeare/gpt_cpu   # the text table

Each (model, seed) runs exactly what a user types, in subprocesses (makemore.runs does the running and
the reading back, for scripts/experiments.py too):

    python -m makemore fit  --config configs/MODEL.yaml --seed_everything SEED --data.batch_seed SEED
    python -m makemore test --config configs/MODEL.yaml ... --ckpt_path BEST

The seed sets the initial weights and the mini-batches; the split is the configs' (data.seed 42) for every
run. Every number is read back from what the runs left: val from the best checkpoint's logged val_loss
(selected on validation only), test from the test_loss the one test run logged, train by evaluating the best
checkpoint on the whole train split with the same metric (each character and word end once, in nats). The
bigram's anchor is computed here in closed form: the counting bigram with +1 smoothing on the same train split.

The text models (TEXT: configs/shakespeare/*.yaml, tiny shakespeare, data.format text) get a table of their own,
run only when named in --models. They are scored by the text metric (docs/text.md: every character of a split
once, from the characters before it in its window of block_size), the train loss too. Their configs use the
lecture's and nanoGPT's 90/10 split, which has no test share: no test is run and the table shows none, with
bits per character from val. Their bigram's anchor is the counting bigram of the same train split, in closed
form, scored by the same metric.

Results are merged by (model, seed) into --docs/leaderboard.json; leaderboard.md and leaderboard.png (the
validation curves of the names ladder) are rewritten from all of it, and the table goes into README.md between
its `<!-- leaderboard -->` markers (the text table between `<!-- leaderboard-text -->` markers, where it has
them). Each run records a fingerprint of its settings (the parsed config,
--max_steps and --data_path): a model's row averages only the seeds that share its newest run's settings, and names the
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
from typing import Optional, Sequence

from makemore.errors import MakemoreError
from makemore.runs import (
    CLOSED_FORM,
    LADDER,
    TEACHERS,
    TEXT,
    Runner,
    config_path,
    datamodule_for,
    load_yaml,
    minutes,
    new_version,
    shown,
    split_loss,
    versions,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"  # a link to makemore/configs: results name configs/NAME.yaml
RUNNER = Runner(REPO)  # every command runs from the repository root, as the docs show them
# A distilled model's teacher (makemore.runs.TEACHERS) is trained once, seed 0, where its config names it (under
# TEACHERS_ROOT), and serves every seed of the student; a --max_steps smoke run trains a shortened one under --root.
TEACHERS_ROOT = REPO / "lightning_logs" / "teachers"
TRAINED: dict[str, Path] = {}  # teacher model -> the last.ckpt this process trained (one teacher for every seed)
MARKERS = ("<!-- leaderboard -->", "<!-- /leaderboard -->")
TEXT_MARKERS = ("<!-- leaderboard-text -->", "<!-- /leaderboard-text -->")
NO_TEST = "the lecture's 90/10 split has no test share"
SEEDS = [0, 1, 2]  # a full row: the anchors are goals for the mean over this many seeds


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(LADDER),
        choices=[*LADDER, *TEXT],
        metavar="MODEL",
        help=f"default: the names ladder, all of it ({' '.join(LADDER)}); the text models: {' '.join(TEXT)}",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS, help=f"default: {' '.join(map(str, SEEDS))}")
    parser.add_argument("--max_steps", type=int, default=None, help="shorten every run (a smoke run)")
    parser.add_argument(
        "--data_path",
        type=Path,
        default=None,
        help="word list passed to every run, teachers' too, as --data.path (a smoke run; default: the configs' own)",
    )
    parser.add_argument("--table", action="store_true", help="run nothing: rewrite the outputs from the JSON")
    parser.add_argument("--root", type=Path, default=REPO / "lightning_logs" / "leaderboard", help="run folders")
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where leaderboard.md/.json/.png go")
    parser.add_argument("--readme", default=str(REPO / "README.md"), help="README to update, or none")
    args = parser.parse_args(argv)
    args.data = ["--data.path", str(args.data_path.resolve())] if args.data_path else []
    return args


def device() -> str:
    import torch

    if torch.cuda.is_available():  # the configs say accelerator: auto
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def bigram_anchor(best: Path) -> float:
    """Val loss of the counting bigram (+1 smoothing) fitted on the run's own train split, in closed form, scored as
    its runs' val is (split_loss; for a text's windows and a bigram the same number as character by character)."""
    from makemore.checkpoint import read_checkpoint
    from makemore.models import Bigram

    data = datamodule_for(read_checkpoint(str(best)), REPO)
    counts = Bigram.from_counts(*data.examples["train"].tensors(), len(data.vocabulary))  # (N, 1): block_size 1
    return split_loss(counts, data, "val")


def settings(
    config: Path, max_steps: Optional[int], teachers: Sequence[Path] = (), data_path: Optional[Path] = None
) -> str:
    """A fingerprint of what a run of `config` trains: its parsed YAML (comments do not count), --max_steps, the
    contents of its teachers' checkpoints (a retrained teacher changes what the student learns) and --data_path."""
    canonical = json.dumps(
        {
            "config": load_yaml(config),
            "max_steps": max_steps,
            **({"data_path": str(data_path.resolve())} if data_path else {}),
            **({"teachers": [hashlib.sha256(Path(t).read_bytes()).hexdigest() for t in teachers]} if teachers else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def teacher_for(model: str, args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    """The teacher checkpoints `model` distils from and the CLI overrides that give them to it (none where its
    config's own are used). A missing teacher is trained first, as its config trains it with seed 0:

        python -m makemore fit --config configs/TEACHER.yaml --seed_everything 0 --data.batch_seed 0 \\
            --trainer.default_root_dir lightning_logs/teachers/TEACHER

    which, into an empty folder, writes the last.ckpt the student's config names."""
    if model not in TEACHERS:
        return [], []
    named = [REPO / path for path in load_yaml(config_path(model, CONFIGS))["model"]["teacher"]]
    configs_own = args.max_steps is None and args.data_path is None  # not a smoke run: the teachers the config names
    if configs_own and all(path.exists() for path in named):
        return named, []
    teacher = TEACHERS[model]
    if teacher in TRAINED:
        return [TRAINED[teacher]], ["--model.teacher", f"[{TRAINED[teacher]}]"]
    config = config_path(teacher, CONFIGS)
    root = (TEACHERS_ROOT if configs_own else args.root / "teachers") / teacher
    seed = ["--seed_everything", "0", "--data.batch_seed", "0"]
    fit = ["fit", "--config", str(config), *seed, "--trainer.default_root_dir", str(root), *args.data]
    if args.max_steps:  # a smoke run's teacher validates once, at its end: its curve is not what the run is for
        fit += ["--trainer.max_steps", str(args.max_steps), "--data.val_every_n_steps", str(args.max_steps)]
    before = versions(root)
    RUNNER.makemore(fit, root / "fit.log", f"{teacher} fit (teacher of {model})")
    last = TRAINED[teacher] = new_version(root, before) / "checkpoints" / "last.ckpt"
    if configs_own and last not in named:
        print(f"leaderboard.py: {model}'s config names {named}; this run uses the teacher just trained, {last}")
    return [last], ["--model.teacher", f"[{last}]"]


def current(runs: dict[str, dict]) -> tuple[dict[str, dict], dict[str, list[int]]]:
    """The runs a table may average, and per model the seeds left out: those whose settings differ from the
    model's newest run (its config changed since, or a --max_steps smoke run). A mean never mixes settings."""
    kept, stale = {}, {}
    for model in {**LADDER, **TEXT}:
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
    config = config_path(model, CONFIGS)
    teachers, teacher_args = teacher_for(model, args)
    seeded = ["--seed_everything", str(seed), "--data.batch_seed", str(seed), *teacher_args, *args.data]
    result = RUNNER.fit_and_test(config, (args.root / f"seed_{seed}").resolve(), args.max_steps, seeded)
    yaml = load_yaml(config)
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
        settings=settings(config, args.max_steps, teachers, args.data_path),
    )
    if teachers:
        entry["teachers"] = [shown(path, REPO) for path in teachers]
    if model in CLOSED_FORM:
        entry["anchor"] = bigram_anchor(REPO / entry["best_checkpoint"])
    return entry


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def summary(runs: dict[str, dict], ladder: dict = LADDER) -> list[dict]:
    """One row per model of `ladder` (LADDER or TEXT) that has runs: means and standard deviations over its seeds.
    test_bpc is None where a run has no test (a text split with no test share)."""
    rows = []
    for model, (anchor, source) in ladder.items():
        mine = sorted((r for r in runs.values() if r["model"] == model), key=lambda r: r["seed"])
        if not mine:
            continue
        if anchor is None and model in CLOSED_FORM:
            anchor = statistics.mean(r["anchor"] for r in mine)
        val = statistics.mean(r["val"] for r in mine)
        tested = all(r["test"] is not None for r in mine)
        met = None if anchor is None else (abs(val - anchor) <= 0.01 if model in CLOSED_FORM else val <= anchor)
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
                "test_bpc": statistics.mean(r["test"] for r in mine) / math.log(2) if tested else None,
                "wall_time_s": statistics.mean(r["wall_time_s"] for r in mine),
                "device": ", ".join(sorted({r["device"] for r in mine})),
                "anchor": anchor,
                "anchor_source": source,
                "met": met,
            }
        )
        if ladder is TEXT:  # bits per character from val: a text's split may have no test share
            rows[-1]["val_bpc"] = val / math.log(2)
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
            anchor = anchor_cell(r)
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
                    minutes(r["wall_time_s"]),
                    r["device"],
                    anchor,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def anchor_cell(r: dict) -> str:
    goal = "val within 0.01" if r["model"] in CLOSED_FORM else "val at or below"
    return f"{r['anchor']:.4f}: {r['anchor_source']}; {goal}: {verdict(r)}"


def test_cell(r: dict) -> str:
    """A text row's test: mean ± std, or — where its split has no test share."""
    return "—" if r["test_bpc"] is None else mean_std(r["test"])


def text_table(rows: list[dict]) -> str:
    """The text models' table (docs): test may be absent, so bits per character are val's."""
    head = ["model", "params", "steps × batch", "train", "val", "test", "val bits/char", "fit time", "device"]
    lines = ["| " + " | ".join([*head, "anchor (val)"]) + " |", "|" + "---|" * (len(head) + 1)]
    for r in rows:
        cells = [
            f"[`{r['model']}`]({os.path.relpath(REPO / r['config'], REPO / 'docs')})",
            f"{r['params']:,}",
            f"{r['steps']:,} × {r['batch_size']}",
            mean_std(r["train"]),
            mean_std(r["val"]),
            test_cell(r),
            f"{r['val_bpc']:.3f}",
            minutes(r["wall_time_s"]),
            r["device"],
            r["anchor_source"] if r["anchor"] is None else anchor_cell(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_text_table(rows: list[dict]) -> str:
    """The README's text block: a line saying what it is, the short table, and why test may be absent."""
    lines = [
        "Tiny shakespeare (`data.format: text`, [text](docs/text.md)), `configs/shakespeare/`: each character of the"
        " val split once, in nats; the same script with `--models shakespeare/bigram shakespeare/gpt_cpu`:",
        "",
        "| model | params | val | test | val bits/char | anchor |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        anchor = "none published" if r["anchor"] is None else f"{r['anchor']:.3f}: {verdict(r)}"
        test = "—" if r["test_bpc"] is None else f"{statistics.mean(r['test']):.4f}"
        lines.append(
            f"| `{r['model']}` ({seed_count(len(r['seeds']))}) | {r['params']:,} | {statistics.mean(r['val']):.4f}"
            f" | {test} | {r['val_bpc']:.3f} | {anchor} |"
        )
    if any(r["test_bpc"] is None for r in rows):
        lines += ["", f"—: {NO_TEST}."]
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


def teacher_notes(rows: list[dict]) -> list[str]:
    """A note per distilled row: its fit time is the student's; the teacher's is a cost of its own, paid once."""
    fit_times = {r["model"]: r["wall_time_s"] for r in rows}
    return [
        f"- **{model}**: one network, distilled from `{teacher}` (seed 0, trained on the same train split, once for"
        f" every seed: [usage](usage.md#distilling-from-trained-networks)); its fit time is the student's only, and"
        f" the teacher costs a fit of its own"
        + (f" ({minutes(fit_times[teacher])} in its row)" if teacher in fit_times else "")
        + "."
        for model, teacher in TEACHERS.items()
        if model in fit_times
    ]


def left_out(stale: dict[str, list[int]], ladder: dict) -> list[str]:
    """A note per model of `ladder` with seeds left out of its row, and the command that reruns them."""
    return [
        f"- **left out**: `{model}` seed{'s' if len(seeds) > 1 else ''} {' '.join(map(str, seeds))} ran other"
        " settings than its newest run (its config changed since, or a shortened run): rerun them with"
        f" `python scripts/leaderboard.py --models {model} --seeds {' '.join(map(str, seeds))}`."
        for model, seeds in stale.items()
        if model in ladder
    ]


def text_section(rows: list[dict], stale: dict[str, list[int]]) -> list[str]:
    """docs/leaderboard.md's section of the text models (none without their runs)."""
    if not rows:
        return []
    seeds = sorted({len(r["seeds"]) for r in rows})
    notes = [
        "- **train / val**: the text metric ([text](text.md#the-metric)): the mean negative log-likelihood, in nats, of"
        " every character of the split, each once, predicted from the characters before it in its window of"
        " block_size consecutive characters (a sequence network reads each window once). **val** is the best"
        " checkpoint's (selected on validation only); **train** evaluated by the script on that checkpoint with the"
        " same metric. **val bits/char**: the mean val loss / ln 2 (val, since a text's split may have no test"
        " share).",
    ]
    if any(r["test_bpc"] is None for r in rows):
        notes.append(
            f"- **test**: —: {NO_TEST} (data.train_fraction + data.val_fraction = 1), so no test is run (`makemore"
            " test` refuses such a config in one line)."
        )
    notes += [
        "- **steps × batch**: SGD steps and training examples per step: characters drawn uniformly, each with the"
        " block_size characters before it; a sequence network (the GPTs) predicts at every position of each"
        " example's window, as nanoGPT trains on a batch of random windows. **fit time**: as above.",
        "- **anchor**: the bigram's is computed here in closed form on the same train split and scored by the same"
        " metric (val within 0.01). nanoGPT's are its `estimate_loss`: a mean over randomly sampled windows of its"
        " own 90/10 split of the same text (65 characters, no start token), so they are guides (val at or below).",
        *left_out(stale, TEXT),
    ]
    return [
        "## Text: tiny shakespeare",
        "",
        "Written by `python scripts/leaderboard.py --models " + " ".join(r["model"] for r in rows) + "` from the"
        " runs it made (each row's runs and commands are in [leaderboard.json](leaderboard.json)); nothing typed in."
        " The text configs (`configs/shakespeare/`, `data.format: text`, [text](text.md)) on the tiny shakespeare"
        " shipped with makemore, split as the lecture and nanoGPT split it: the first 90% of the characters train,"
        " the next 10% validate, contiguous. Numbers are mean ± standard deviation over the seeds"
        f" ({'/'.join(map(str, seeds))} per model), each seed a fresh initialisation and mini-batch order.",
        "",
        text_table(rows),
        "",
        *notes,
        "",
    ]


def replace_block(content: str, markers: tuple[str, str], block: str) -> Optional[str]:
    """`content` with `block` between its `markers`, or None where it has no such block."""
    start, end = (content.find(marker) for marker in markers)
    if start < 0 or end < start:
        return None
    return content[: start + len(markers[0])] + "\n" + (block + "\n" if block else "") + content[end:]


def write(runs: dict[str, dict], args: argparse.Namespace) -> tuple[str, dict[str, list[int]]]:
    """Rewrite the JSON, tables, plot and README from `runs`; the tables' text and the seeds they left out."""
    args.docs.mkdir(parents=True, exist_ok=True)
    kept, stale = current(runs)
    rows = summary(kept)
    text_rows = summary(kept, TEXT)
    text = table(rows) if rows else ""
    board = {"runs": runs, "summary": rows, "text_summary": text_rows}
    (args.docs / "leaderboard.json").write_text(json.dumps(board, indent=2) + "\n")
    plot(kept, args.docs / "leaderboard.png")
    seeds = sorted({len(r["seeds"]) for r in rows})
    names = [
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
        *teacher_notes(rows),
        *left_out(stale, LADDER),
        "",
        "![validation curves](leaderboard.png)",
        "",
    ]
    # The names ladder's section where it has runs (it always has in the repository), then the text models'.
    lines = ["# The ladder: every model on one split, one metric", "", *(names if rows else [])]
    (args.docs / "leaderboard.md").write_text("\n".join([*lines, *text_section(text_rows, stale)]))
    if args.readme != "none":
        readme = Path(args.readme)
        content = replace_block(readme.read_text(), MARKERS, readme_table(rows) if rows else "")
        if content is None:
            sys.exit(f"leaderboard.py: {readme} has no {MARKERS[0]} ... {MARKERS[1]} block for the table")
        with_text = replace_block(content, TEXT_MARKERS, readme_text_table(text_rows) if text_rows else "")
        if with_text is None and text_rows:
            print(
                f"leaderboard.py: {readme} has no {TEXT_MARKERS[0]} ... {TEXT_MARKERS[1]} block: the text table is"
                f" only in {args.docs / 'leaderboard.md'}",
                file=sys.stderr,
            )
        readme.write_text(content if with_text is None else with_text)
    if text_rows:
        text += ("\n\n" if text else "") + text_table(text_rows)
    return text, stale


def main(argv: Optional[list[str]] = None) -> None:
    try:
        leaderboard(argv)
    except MakemoreError as error:  # a run that went wrong (makemore.runs.RunError) or a checkpoint that is not there
        sys.exit(f"leaderboard.py: {error}")


def leaderboard(argv: Optional[list[str]]) -> None:
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
