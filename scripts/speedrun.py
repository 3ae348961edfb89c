"""Time to a target loss (issue #38): from `python -m makemore fit` starting to its first validation at or below a
target, on this CPU, beside the peers timed the same way; written to docs/speedrun.md (with .json and .png beside).

Each run is a whole process, started by this script, and timed from just before it is spawned (interpreter, torch
and Lightning start-up, data, every SGD step and every validation count). makemore's time to a target is read back
from its run folder: the first val_loss at or below the target (the exact loss over the whole val split) and the
wall time TensorBoard's event recorded when that validation ended (`makemore.runs.time_to_target`). The fit stops
there: Lightning's `EarlyStopping(monitor="val_loss", stopping_threshold=TARGET)` (the lowest target of the run),
never for patience, and `--trainer.max_time` caps it. A target not reached is reported as not reached, with the best
val and the time spent, never as a time; a run or peer that fails is named with its error in the table.

The races (RACES; --races picks some, by name):
- names (the lecture's split): `configs/speedrun/names.yaml` to 2.00; the lecture's own recipe,
  `configs/wavenet.yaml`, validating every 2,000 steps, to 2.00 (the reference); `configs/transformer_long.yaml` to
  1.92 and `configs/transformer_ensemble.yaml` to 1.90 (three transformers as one network); the record from nothing,
  `names_record`, to 1.92 and 1.90: two `configs/speedrun/names_long.yaml` teachers (side by side, the threads
  shared, or one after the other on one thread), then `configs/speedrun/names_distilled.yaml` distilled from them, timed from just
  before the first teacher's spawn.
- tiny shakespeare (the lecture's 90/10 split): `configs/speedrun/shakespeare.yaml` to the exact final val of
  nanoGPT's CPU recipe run in the same repeat (peer `nanogpt`); `configs/speedrun/shakespeare_long.yaml` to 0.30
  below it (its ratio: to nanoGPT's whole time); `configs/shakespeare/gpt_cpu_muon.yaml`, trained longer, to 1.60.
Peers (PEERS), each with the same threads (OMP_NUM_THREADS and MKL_NUM_THREADS):
- `nanogpt`: nanoGPT's train.py with its README CPU recipe (benchmarks/nanogpt_baseline.py and vs_nanogpt.py run
  and score it): its time is the whole process, to its final val, scored exactly here as makemore scores (vs_nanogpt).
  Its train.py has no seed option: its repeats differ in time only.
- `makemore.py`: makemore.py's Transformer on names.txt as its README runs it, `--seed` per repeat; its time to 2.00
  and 1.92 read from its own lines `step N train loss: X test loss: Y` (every 500 steps; Y is its estimate over 10
  batches of 100 of its own 1,000 test words, not makemore's val split), stopped at --peer_cap_minutes.

    python scripts/speedrun.py --nanogpt /tmp/nanogpt --makemore_ref /tmp/makemore_ref    # the full table, hours
    python scripts/speedrun.py --races names,wavenet --seeds 1 --threads 1                # names 2.00 only
    python scripts/speedrun.py --smoke --out /tmp/speedrun.md                             # a check of this script

(nanoGPT: `git clone https://github.com/karpathy/nanoGPT /tmp/nanogpt`; makemore.py: `git clone
https://github.com/karpathy/makemore /tmp/makemore_ref`.) The machine should be otherwise idle; the load averages
before and after each run are recorded.
"""

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks package: nanoGPT's runner and scorer, reused

from benchmarks import nanogpt_baseline as baseline  # noqa: E402
from benchmarks import vs_nanogpt  # noqa: E402
from makemore.runs import RunError, config_path, logged, new_version, shown, time_to_target, versions  # noqa: E402

SECONDS_PER_MINUTE = 60
MARKERS = ("<!-- speedrun -->", "<!-- /speedrun -->")  # the generated part of --out
FAILED_TAIL_LINES = 5  # of a failed run's output, in the table's note
MAKEMORE_PY_VAL = re.compile(r"^step (\d+) train loss: ([0-9.]+) test loss: ([0-9.]+)$")
MAKEMORE_PY_COMMAND = ("makemore.py", "-i", "names.txt", "-o", "{out}", "--seed", "{seed}")  # its README's, seeded


@dataclass(frozen=True)
class BelowNanogpt:
    """A target: the exact final val of nanoGPT's run of the same repeat and threads, less `margin`.

    Attributes:
        margin: how far below nanoGPT's final val (0: at it).
    """

    margin: float = 0.0


NANOGPT_FINAL = BelowNanogpt()
NANOGPT_BELOW = BelowNanogpt(0.30)  # issue #38's goal: this far below nanoGPT's final val within its whole time
NANOGPT_LABEL = "nanoGPT's final val"  # how the table names these targets


@dataclass(frozen=True)
class Race:
    """A makemore config timed to its targets.

    Attributes:
        name: the race's name (--races).
        corpus: what it trains on, as the table says it.
        config: the config's name (makemore.runs.config_path).
        targets: the losses to time (BelowNanogpt: from nanoGPT's final val of the same repeat).
        options: more `fit` options (a validation interval, a longer schedule).
        why: the table's note.
        teachers: configs trained first, from nothing, whose last checkpoints `config` distils from (model.teacher):
            the race's time starts before them (`run_race`).
        teacher_options: more `fit` options of each teacher.
    """

    name: str
    corpus: str
    config: str
    targets: tuple[Union[float, BelowNanogpt], ...]
    options: tuple[str, ...] = ()
    why: str = ""
    teachers: tuple[str, ...] = ()
    teacher_options: tuple[str, ...] = ()


RACES = (
    Race("names", "names", "speedrun/names", (2.00,), why="the fastest config found to 2.00"),
    Race(
        "wavenet",
        "names",
        "wavenet",
        (2.00,),
        ("--data.val_every_n_steps", "2000"),
        "the reference: lecture part 5's recipe, validating every 2,000 steps",
    ),
    Race("transformer_long", "names", "transformer_long", (1.92,), why="makemore.py's Transformer's README number"),
    Race("ensemble", "names", "transformer_ensemble", (1.90,), why="below every published names.txt number"),
    Race(
        "names_record",
        "names",
        "speedrun/names_distilled",
        (1.92, 1.90),
        why="one network from nothing: two names_long teachers, then a student distilled from them; both stages timed",
        teachers=("speedrun/names_long", "speedrun/names_long"),
    ),
    Race("shakespeare", "tiny shakespeare", "speedrun/shakespeare", (NANOGPT_FINAL,), why="nanoGPT's CPU recipe's val"),
    Race(
        "shakespeare_long",
        "tiny shakespeare",
        "speedrun/shakespeare_long",
        (NANOGPT_BELOW,),
        why="0.30 below nanoGPT's CPU recipe's val, within nanoGPT's whole time (its ratio is to that time)",
    ),
    Race(
        "shakespeare_1.60",
        "tiny shakespeare",
        "shakespeare/gpt_cpu_muon",
        (1.60,),
        (
            "--trainer.max_steps=3600",
            "--model.lr_scheduler.init_args.T_max=3600",
            "--data.val_every_n_steps=600",
        ),
        "gpt_cpu_muon.yaml on twice its schedule (at 1,800 steps it ends at 1.6178)",
    ),
)
PEERS = ("nanogpt", "makemore.py")
MAKEMORE_PY_TARGETS = (2.00, 1.92)
# --smoke: a names race of a few steps, one target reached at the first validation and one never; a record race (the
# lecture's MLP distilled from two of its kind, all of a few steps); and the peer makemore.py from a folder that has
# none (a failing peer): the whole report in seconds.
SMOKE_STEPS = 20
SMOKE_TARGETS = (4.0, 0.5)


# --------------------------------------------------------------------------------------------------------- runs


def load_average() -> Optional[list[float]]:
    return baseline.load_average()


def thread_env(threads: int) -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def max_time(minutes: float) -> str:
    """Lightning's max_time, DD:HH:MM:SS."""
    seconds = round(minutes * SECONDS_PER_MINUTE)
    days, seconds = divmod(seconds, 24 * 3600)
    hours, seconds = divmod(seconds, 3600)
    return f"{days:02d}:{hours:02d}:{seconds // 60:02d}:{seconds % 60:02d}"


def stop_at(target: float) -> list[str]:
    """Lightning's EarlyStopping: stop at the first validation below `target` (strictly), never for patience."""
    return [
        "--trainer.callbacks+=EarlyStopping",
        "--trainer.callbacks.monitor=val_loss",
        f"--trainer.callbacks.stopping_threshold={target}",
        f"--trainer.callbacks.patience={sys.maxsize}",
    ]


def label(target: Union[float, BelowNanogpt]) -> str:
    """A target as the table names it."""
    if isinstance(target, float):
        return f"{target:.2f}"
    return NANOGPT_LABEL + (f" - {target.margin:.2f}" if target.margin else "")


def resolve(race: Race, nanogpt_val: Optional[float]) -> dict[str, Optional[float]]:
    """label -> loss: the race's targets, BelowNanogpt from `nanogpt_val` (None where there is none)."""
    targets = {}
    for target in race.targets:
        if isinstance(target, float):
            targets[label(target)] = target
        else:
            targets[label(target)] = None if nanogpt_val is None else nanogpt_val - target.margin
    return targets


def fit_command(config: str, seed: int, threads: int, cap: float, root: Path, options: list[str]) -> list[str]:
    """`python -m makemore fit` of a config: seed_everything and data.batch_seed `seed` (data.seed, the split, stays
    the lecture's), `threads` torch threads, no progress bar, stopped at `cap` minutes (trainer.max_time), its run
    folder under `root`, then `options`."""
    return [
        "-m",
        "makemore",
        "fit",
        "--config",
        shown(config_path(config), ROOT),
        f"--seed_everything={seed}",
        f"--data.batch_seed={seed}",
        f"--num_threads={threads}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        f"--trainer.max_time={max_time(cap)}",
        *options,
    ]


def fit(command: list[str], threads: int, root: Path, args) -> Path:
    """Run a fit_command (its output to root/fit.log) and return its run folder; RunError where it failed."""
    root.mkdir(parents=True, exist_ok=True)
    before = versions(root)
    run = baseline.run_train(args.python, command, ROOT, thread_env(threads), root / "fit.log", quiet=True)
    if run["returncode"] != 0:
        tail = " / ".join(line for _, line in run["lines"][-FAILED_TAIL_LINES:])
        raise RunError(f"{root / 'fit.log'}: exit {run['returncode']}: {tail}")
    return new_version(root, before)


def train_teachers(race: Race, seed: int, threads: int, cap: float, root: Path, start: float, args) -> list[dict]:
    """The race's teachers from nothing, into root/teacher1, 2, ...: side by side, the threads shared among them,
    where there are at least as many threads as teachers, else one after another on all of them. Teacher i (from 0)
    of repeat `seed` is seeded len(teachers) x (seed - 1) + i + 1, so no two repeats share a teacher. Each one's
    seed, command, seconds since `start` (the race's), last val and last checkpoint; RunError where one failed or
    saved no last.ckpt."""
    width = len(race.teachers)
    side_by_side = threads >= width
    each = threads // width if side_by_side else threads

    def train(i: int) -> dict:
        teacher_seed = width * (seed - 1) + i + 1
        folder = root / f"teacher{i + 1}"
        command = fit_command(race.teachers[i], teacher_seed, each, cap, folder, list(race.teacher_options))
        run_dir = fit(command, each, folder, args)
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            raise RunError(f"teacher {i + 1} saved no {checkpoint}")
        return {
            "config": race.teachers[i],
            "seed": teacher_seed,
            "threads": each,
            "command": shlex.join(["python", *command]),
            "seconds": time.time() - start,
            "val": logged(run_dir, "val_loss")[-1][1],
            "checkpoint": str(checkpoint),
        }

    with ThreadPoolExecutor(max_workers=width if side_by_side else 1) as pool:
        return list(pool.map(train, range(width)))


def run_race(race: Race, targets: dict[str, float], seed: int, threads: int, cap: float, root: Path, args) -> dict:
    """One `makemore fit` of a race (after its teachers, where it has some), timed from just before the first spawn
    to each target's first validation.

    Args:
        race: the race.
        targets: label -> loss, the race's targets resolved (`resolve`).
        seed: seed_everything and data.batch_seed.
        threads: torch's threads (--num_threads, OMP_NUM_THREADS, MKL_NUM_THREADS).
        cap: minutes after which each fit stops (trainer.max_time).
        root: the run's trainer.default_root_dir; its output goes to root/fit.log.
        args: the script's options (python).
    """
    result = {"kind": "makemore", "name": race.name, "corpus": race.corpus, "seed": seed, "threads": threads}
    result.update(command="-", load_average_before=load_average(), log=str(root / "fit.log"))
    start = time.time()  # the first process's start, as TensorBoard's wall_time counts (Unix seconds)
    try:
        options = [*stop_at(min(targets.values())), *race.options]
        if race.teachers:
            result["teachers"] = train_teachers(race, seed, threads, cap, root, start, args)
            options.append("--model.teacher=[" + ",".join(t["checkpoint"] for t in result["teachers"]) + "]")
        command = fit_command(race.config, seed, threads, cap, root, options)
        result["command"] = shlex.join(["python", *command])
        run_dir = fit(command, threads, root, args)
        timed = {name: time_to_target(run_dir, target, start) for name, target in targets.items()}
    except RunError as error:
        result["error"] = str(error)
    result.update(wall_seconds=time.time() - start, load_average_after=load_average())
    if "error" in result:
        return result
    result["curve"] = next(iter(timed.values())).curve
    result["targets"] = {
        name: {"target": t.target, "reached": t.reached, "seconds": t.seconds, "step": t.step, "best": t.best}
        for name, t in timed.items()
    }
    return result


def run_nanogpt(tree: Path, model_module, seed: int, threads: int, workdir: Path, args) -> dict:
    """nanoGPT's README CPU recipe, whole process (vs_nanogpt.run_nanogpt), its final model scored exactly."""
    command, eval_interval = nanogpt_command(tree, args.nanogpt_max_iters)
    log = workdir / f"nanogpt-t{threads}-{seed}.log"
    run = vs_nanogpt.run_nanogpt(tree, command, eval_interval, thread_env(threads), model_module, log, args.python)
    result = {"kind": "peer", "name": "nanogpt", "corpus": "tiny shakespeare", "seed": seed, "threads": threads}
    result.update(
        command=shlex.join(["python", *command]) + "  (in a scratch copy of the nanoGPT tree)",
        wall_seconds=run["wall_seconds"],
        load_average_before=run["load_average_before"],
        load_average_after=run["load_average_after"],
        log=str(log),
        curve=[(e["step"], e["val_loss"], e["elapsed_s"]) for e in run["summary"]["evals"]],
    )
    exact = run.get("exact") or {}
    if run["returncode"] != 0 or "loss" not in exact:
        tail = run.get("tail") or [exact.get("error", "no final model")]
        return {**result, "error": f"exit {run['returncode']}: " + " / ".join(tail[-FAILED_TAIL_LINES:])}
    # its time to its own final val: the whole process
    result["targets"] = {
        label(NANOGPT_FINAL): {
            "target": exact["loss"],
            "reached": True,
            "seconds": run["wall_seconds"],
            "step": exact["step"],
            "best": exact["loss"],
        }
    }
    result["final_val"] = exact["loss"]
    return result


def nanogpt_command(tree: Path, max_iters: Optional[int]) -> tuple[list[str], int]:
    """train.py's README command (shortened as vs_nanogpt shortens it) and its evaluation interval."""
    config_ints = dict(baseline.CONFIG_INT.findall((tree / baseline.README_CONFIG).read_text()))
    iters = max_iters or vs_nanogpt.NANOGPT_DEFAULT_ITERS
    eval_interval = vs_nanogpt.fitting_interval(iters, int(config_ints["eval_interval"]))
    changed = eval_interval != int(config_ints["eval_interval"])
    command = baseline.readme_command(max_iters, eval_interval if changed else None)
    if iters <= int(config_ints["warmup_iters"]):
        command.append(f"--warmup_iters={iters // 10}")
    return command, eval_interval


def run_makemore_py(seed: int, threads: int, workdir: Path, args) -> dict:
    """makemore.py's Transformer (its defaults), timed to MAKEMORE_PY_TARGETS from its own printed test losses;
    stopped once it has reached them all or at --peer_cap_minutes."""
    ref = args.makemore_ref.resolve()
    command = [part.format(out=workdir / f"makemore_py-t{threads}-{seed}", seed=seed) for part in MAKEMORE_PY_COMMAND]
    if args.makemore_py_max_steps:
        command += ["--max-steps", str(args.makemore_py_max_steps)]
    result = {"kind": "peer", "name": "makemore.py", "corpus": "names", "seed": seed, "threads": threads}
    result["command"] = shlex.join(["python", *command]) + f"  (in {ref})"
    if not (ref / "makemore.py").is_file():
        return {**result, "error": f"no makemore.py in {ref} (--makemore_ref)"}
    curve: list[tuple[int, float, float]] = []
    cap = args.peer_cap_minutes * SECONDS_PER_MINUTE

    def done(elapsed: float, line: str) -> bool:
        if match := MAKEMORE_PY_VAL.match(line):
            curve.append((int(match[1]), float(match[3]), elapsed))
        return elapsed > cap or bool(curve) and min(v for _, v, _ in curve) <= min(MAKEMORE_PY_TARGETS)

    log = workdir / f"makemore_py-t{threads}-{seed}.log"
    result["load_average_before"] = load_average()
    run = baseline.run_train(args.python, command, ref, thread_env(threads), log, quiet=True, until=done)
    result.update(wall_seconds=run["wall_seconds"], load_average_after=load_average(), log=str(log), curve=curve)
    if run["returncode"] != 0 and not run["stopped"]:
        tail = [line for _, line in run["lines"][-FAILED_TAIL_LINES:]]
        return {**result, "error": f"exit {run['returncode']}: " + " / ".join(tail)}
    if not curve:
        return {**result, "error": f"printed no test loss in {run['wall_seconds']:.0f} s"}
    result["targets"] = {}
    for target in MAKEMORE_PY_TARGETS:
        first = next(((step, seconds) for step, value, seconds in curve if value <= target), None)
        result["targets"][label(target)] = {
            "target": target,
            "reached": first is not None,
            "seconds": first[1] if first else None,
            "step": first[0] if first else None,
            "best": min(v for _, v, _ in curve),
        }
    return result


# ------------------------------------------------------------------------------------------------------- report

# (corpus, target label) -> the run, and its target, whose time every other run of that target is divided by
REFERENCES = {
    ("names", "2.00"): ("wavenet", "2.00"),
    ("tiny shakespeare", label(NANOGPT_FINAL)): ("nanogpt", label(NANOGPT_FINAL)),
    ("tiny shakespeare", label(NANOGPT_BELOW)): ("nanogpt", label(NANOGPT_FINAL)),  # nanoGPT's whole time
}


def cell(runs: list[dict], name: str) -> tuple[str, Optional[float]]:
    """A table cell for one target over repeats: the median (range) of the times where every repeat reached it, else
    what was reached, what was not (best val, seconds spent) and what failed; and that median (None if not all)."""
    times, missed, failed = [], [], []
    for run in runs:
        if "error" in run:
            failed.append(run)
        elif run["targets"][name]["reached"]:
            times.append(run["targets"][name]["seconds"])
        else:
            missed.append(run)
    parts, median = [], None
    if times and not missed and not failed:
        median = statistics.median(times)
        parts.append(f"{median:.0f} s ({min(times):.0f}-{max(times):.0f})" if len(times) > 1 else f"{median:.0f} s")
    elif times:
        parts.append(f"reached in {len(times)} of {len(runs)}: " + ", ".join(f"{t:.0f} s" for t in times))
    if missed:
        spent = ", ".join(f"{run['targets'][name]['best']:.4f} in {run['wall_seconds']:.0f} s" for run in missed)
        parts.append(f"**not reached** in {len(missed)} of {len(runs)} (best val, time spent: {spent})")
    if failed:
        errors = "; ".join(f"seed {run['seed']}: {run['error']}" for run in failed)
        parts.append(f"**failed** in {len(failed)} of {len(runs)} ({errors})")
    return "; ".join(parts), median


def table(results: list[dict]) -> list[str]:
    """The Markdown table: a row per corpus, target, run and threads, over the repeats; the ratio to the target's
    reference time (REFERENCES) where both have a median."""
    groups: dict[tuple, list[dict]] = {}
    for run in results:
        for name in run.get("labels", ()):
            groups.setdefault((run["corpus"], name, run["name"], run["threads"]), []).append(run)
    cells = {key: cell(runs, key[1]) for key, runs in groups.items()}
    rows = [
        "| corpus | target | run | threads | repeats | time to target: median (range) | / reference |",
        "|---|---|---|---:|---:|---|---:|",
    ]
    for (corpus, name, who, threads), (text, median) in cells.items():
        runs = groups[corpus, name, who, threads]
        values = [run["targets"][name]["target"] for run in runs if "error" not in run]
        target = f"{name} ({statistics.median(values):.4f})" if values and name.startswith(NANOGPT_LABEL) else name
        reference, reference_target = REFERENCES.get((corpus, name), (None, name))
        base = cells.get((corpus, reference_target, reference, threads), ("", None))[1]
        ratio = f"{median / base:.2f}" if median is not None and base and who != reference else "-"
        rows.append(f"| {corpus} | {target} | {who} | {threads} | {len(runs)} | {text} | {ratio} |")
    return rows


def plot(results: list[dict], path: Path) -> None:
    """Each run's val curve against the seconds since its process started, a panel per corpus, targets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = sorted({run["corpus"] for run in results})
    figure, axes = plt.subplots(1, len(corpora), figsize=(7 * len(corpora), 4.5), squeeze=False)
    for axis, corpus in zip(axes[0], corpora):
        targets = set()
        for run in results:
            if run["corpus"] != corpus or not run.get("curve"):
                continue
            seconds = [point[2] for point in run["curve"]]
            values = [point[1] for point in run["curve"]]
            axis.plot(seconds, values, marker=".", label=f"{run['name']} seed {run['seed']} {run['threads']}t")
            targets |= {t["target"] for t in run.get("targets", {}).values()}
        for target in sorted(targets):
            axis.axhline(target, color="grey", linestyle="--", linewidth=0.8)
        axis.set(title=corpus, xlabel="seconds since the process started", ylabel="val loss (nats per character)")
        if axis.lines:
            axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def machine() -> dict:
    return {
        "cpu": baseline.cpu_model(),
        "os.cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_report(out: Path, races: list[Race], results: list[dict], facts: dict, command: str) -> None:
    """out (Markdown), out.json (every run) and out.png (the curves). Where out exists with MARKERS, only the part
    between them is replaced: the text around it (what was tried, why) is kept."""
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = out.with_suffix(".png")
    plot(results, picture)
    loads = [load for run in results for load in (run.get("load_average_before"), run.get("load_average_after"))]
    lines = [
        "Generated by `scripts/speedrun.py` (its docstring says how each run is timed). Each time is from the start",
        "of the run's process to its first validation at or below the target (makemore: the exact val_loss over the",
        "whole val split; nanoGPT: its whole process to its final val, scored exactly the same way; makemore.py: its",
        "own printed test loss, an estimate over 10 batches of its 1,000 test words). A target not reached shows the",
        "best val and the time spent. In the plot, nanoGPT's and makemore.py's curves are their own printed estimates.",
        "",
        f"This run: `{command}`",
        "",
        *table(results),
        "",
        *[
            f"- {race.name}: `{shlex.join(['configs/' + race.config + '.yaml', *race.options])}`: {race.why}"
            for race in races
        ],
        "",
        f"![val curves]({picture.name})",
        "",
        f"Machine: {facts['cpu']}, {facts['os.cpu_count']} logical CPUs, {facts['platform']}, Python "
        f"{facts['python']}, torch {facts['torch']}. Load averages (1, 5, 15 min) before and after the runs: "
        + ", ".join(str(load) for load in loads if load),
        "",
        "Commands (each run; threads also as OMP_NUM_THREADS and MKL_NUM_THREADS):",
        "",
        *[line for run in results for line in commands(run)],
    ]
    block = "\n".join(lines)
    old = out.read_text() if out.exists() else ""
    if MARKERS[0] in old and MARKERS[1] in old:
        before, rest = old.split(MARKERS[0], 1)
        out.write_text(f"{before}{MARKERS[0]}\n{block}\n{MARKERS[1]}{rest.split(MARKERS[1], 1)[1]}")
    else:
        out.write_text(f"# Time to a target loss\n\n{MARKERS[0]}\n{block}\n{MARKERS[1]}\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": facts, "runs": results}, indent=1))


def commands(run: dict) -> list[str]:
    """A run's commands, as the report lists them: its teachers' first (val and seconds since the race started)."""
    lines = [
        f"- {run['name']}, seed {run['seed']}, teacher {i} (seed {t['seed']}, {t['threads']} thread(s), val "
        f"{t['val']:.4f} after {t['seconds']:.0f} s): `{t['command']}`"
        for i, t in enumerate(run.get("teachers", ()), 1)
    ]
    return [*lines, f"- {run['name']}, seed {run['seed']}, {run['threads']} thread(s): `{run['command']}`"]


# --------------------------------------------------------------------------------------------------------- main


def main(argv: Optional[list[str]] = None) -> int:
    names = [race.name for race in RACES] + list(PEERS)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--races", default=",".join(names), help=f"comma-separated, of {', '.join(names)}")
    parser.add_argument("--seeds", type=int, default=3, help="repeats, seeds 1..N (default: %(default)s)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: %(default)s)")
    parser.add_argument("--cap_minutes", type=float, default=60, help="a makemore fit's limit (default: %(default)s)")
    parser.add_argument("--peer_cap_minutes", type=float, default=30, help="makemore.py's (default: %(default)s)")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT tree (train.py, model.py, config/)")
    parser.add_argument("--nanogpt_max_iters", type=int, help="replaces the README's 2000 (a check of this script)")
    parser.add_argument("--makemore_ref", type=Path, default=Path("/tmp/makemore_ref"), help="a makemore.py tree")
    parser.add_argument("--makemore_py_max_steps", type=int, help="makemore.py's --max-steps (a check of this script)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "speedrun.md", help="default: %(default)s")
    parser.add_argument("--workdir", type=Path, help="keep run folders and logs here (default: a temporary folder)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of every run (default: this one)")
    parser.add_argument("--smoke", action="store_true", help=f"a check of this script: {SMOKE_STEPS} steps, names")
    args = parser.parse_args(argv)

    chosen = args.races.split(",")
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"--races: no {', '.join(unknown)}; there are {', '.join(names)}")
    races = [race for race in RACES if race.name in chosen]
    if args.smoke:
        overrides, _ = vs_nanogpt.makemore_overrides(config_path("speedrun/names"), SMOKE_STEPS)
        mlp, _ = vs_nanogpt.makemore_overrides(config_path("mlp"), SMOKE_STEPS)
        races = [
            Race("names", "names", "speedrun/names", SMOKE_TARGETS, tuple(overrides), "smoke"),
            Race("record", "names", "mlp", SMOKE_TARGETS[:1], tuple(mlp), "smoke", ("mlp", "mlp"), tuple(mlp)),
        ]
    threads = [int(n) for n in args.threads.split(",")]
    seeds = range(1, args.seeds + 1)
    results: list[dict] = []
    command = shlex.join(["python", "scripts/speedrun.py", *(sys.argv[1:] if argv is None else argv)])
    facts = machine()

    def add(run: dict) -> None:  # the report is rewritten after each run: a stopped script leaves its runs so far
        results.append(run)
        report_progress(run)
        write_report(args.out, races, results, facts, command)

    with tempfile.TemporaryDirectory(prefix="speedrun-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        tree = model_module = None
        if "nanogpt" in chosen and args.nanogpt:
            tree = baseline.scratch_tree(args.nanogpt.resolve(), workdir)
            baseline.write_shakespeare_char(baseline.default_text(), tree / "data" / baseline.DATASET)
            model_module = vs_nanogpt.nanogpt_model_module(tree)
        for n in threads:
            for seed in seeds:
                nanogpt_val = None
                if "nanogpt" in chosen:
                    if tree is None:
                        peer = {"kind": "peer", "name": "nanogpt", "corpus": "tiny shakespeare", "seed": seed}
                        run = {**peer, "threads": n, "command": "-", "error": "no --nanogpt tree given"}
                    else:
                        run = run_nanogpt(tree, model_module, seed, n, workdir, args)
                    run["labels"] = [label(NANOGPT_FINAL)]
                    nanogpt_val = run.get("final_val")
                    add(run)
                if "makemore.py" in chosen or args.smoke:
                    run = run_makemore_py(seed, n, workdir, args)
                    run["labels"] = [label(target) for target in MAKEMORE_PY_TARGETS]
                    add(run)
                for race in races:
                    targets = resolve(race, nanogpt_val)
                    if None in targets.values():
                        run = {"kind": "makemore", "name": race.name, "corpus": race.corpus, "seed": seed}
                        run.update(threads=n, command="-", error="no nanoGPT final val in this repeat to aim at")
                    else:
                        root = workdir / f"{race.name}-t{n}-{seed}"
                        run = run_race(race, targets, seed, n, args.cap_minutes, root, args)
                    run["labels"] = list(targets)
                    add(run)
    print("\n".join(table(results)))
    print(f"written: {args.out}, {args.out.with_suffix('.json')}, {args.out.with_suffix('.png')}")
    return 0


def report_progress(run: dict) -> None:
    what = run.get("error") or ", ".join(
        f"{name}: " + (f"{t['seconds']:.0f} s" if t["reached"] else f"not reached (best {t['best']:.4f})")
        for name, t in run["targets"].items()
    )
    print(f"{run['name']} seed {run['seed']} threads {run['threads']}: {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
