"""`makemore search`: a hyperparameter search with Optuna over any option of the CLI, the space in YAML.

Each trial is a normal `fit` of the base config with the trial's options on top, in ROOT/trial_N. Optuna searches:
RDBStorage with heartbeats (RetryHeartbeatStaleTrialCallback runs a dead process's trial again), create_study with
load_if_exists (processes and later commands share the study), TPESampler or BruteForceSampler, MedianPruner,
MaxTrialsCallback, optimize's timeout, its plots. makemore's own: the space file, a trial as a fit pruned at its SGD
step, each trial's sampler seeded by its number, the race for the last place, one study a --root, the report.
"""

import contextlib
import difflib
import functools
import hashlib
import inspect
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import lightning as L
import optuna
import sqlalchemy
import sqlalchemy.exc
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from makemore.checkpoint import read_checkpoint
from makemore.errors import ConfigError, MakemoreError
from makemore.lightning_cli import run, shown

HEARTBEAT_INTERVAL = 5  # seconds between a running trial's heartbeats in the study's database
GRACE_PERIOD = 30  # seconds without a heartbeat after which a running trial's process is taken for dead
MAX_RETRY = 2  # times a trial whose process died is run again with its settings before it stays failed
MAX_FAILURES = 3  # trials failing one after another that stop the search (the base config or the space is wrong)
POLL_SECONDS = 1  # how often the reporting command looks whether other processes' trials have ended
STUDY_RECORD = "study.json"  # in --root: the one study whose trial folders, best.yaml and report the folder holds
OPTUNA_TABLES = {"studies", "trials", "version_info"}  # tables every Optuna study database has
TABLES_NAMED = 5  # tables of another database an error names
PLOT_DPI = 100  # the resolution of history.png and importances.png
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PLACED = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)  # the trials that hold a place among the study's N


def say(line: str) -> None:
    """Print `line` to stderr as the search's own: a trial started, ended, failed, waited for."""
    print(f"makemore search: {line}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- the space file


def read_space(path: Path) -> tuple[dict[str, BaseDistribution], dict, dict[str, Any]]:
    """A search file's space ({option: Optuna distribution}), pruner arguments and fixed options; ConfigError if bad."""
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such search space file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(content, dict) or not isinstance(content.get("space"), dict) or not content["space"]:
        raise ConfigError(f"{path}: a search space file has a `space:` mapping of options to distributions")
    unknown = set(content) - {"space", "pruner", "fixed"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; a search file has `space:`, `pruner:`, `fixed:`")
    space = {option: distribution(spec, f"{path}: {option}") for option, spec in content["space"].items()}
    pruner, fixed = content.get("pruner") or {}, content.get("fixed") or {}
    if not isinstance(pruner, dict):
        raise ConfigError(f"{path}: pruner must be a mapping of optuna.pruners.MedianPruner's arguments")
    median_pruner(pruner, path)
    if not isinstance(fixed, dict):
        raise ConfigError(f"{path}: fixed must be a mapping of CLI options to the value every trial sets")
    if set(fixed) & set(space):
        raise ConfigError(f"{path}: {sorted(set(fixed) & set(space))} both searched and fixed; give each option once")
    return space, pruner, fixed


def distribution(spec: Any, where: str) -> BaseDistribution:
    """The Optuna distribution of a space entry, {choices} or {low, high, log, step}; ConfigError starting `where`."""
    try:
        if isinstance(spec, dict) and "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"] or set(spec) != {"choices"}:
                raise ValueError("choices must be a non-empty list, alone")
            # Optuna's choices are numbers, strings, booleans or null: a list or mapping (AdamW's betas) is searched
            # as its JSON text, which the command line reads back as the list.
            return CategoricalDistribution(
                [json.dumps(c) if isinstance(c, (list, dict)) else c for c in spec["choices"]]
            )
        if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) <= {"low", "high", "log", "step"}:
            raise ValueError("give {choices: [...]} or {low: ..., high: ...} with optional log or step")
        low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log"))
        if not low < high:
            raise ValueError(f"an empty or inverted range (low {low}, high {high})")
        if log and low <= 0:
            raise ValueError(f"a log range needs low above 0 (got {low})")
        if all(isinstance(value, int) and not isinstance(value, bool) for value in (low, high, step or 1)):
            return IntDistribution(low, high, log=log, step=1 if step is None else step)
        return FloatDistribution(low, high, log=log, step=step)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None


def median_pruner(arguments: dict, path: Path) -> optuna.pruners.BasePruner:
    """optuna.pruners.MedianPruner(**arguments); ConfigError naming the search file for a bad name or value."""
    names = list(inspect.signature(optuna.pruners.MedianPruner).parameters)
    for key in set(arguments) - set(names):
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{path}: pruner: unknown argument {key!r}{hint}; MedianPruner takes {', '.join(names)}")
    try:
        return optuna.pruners.MedianPruner(**arguments)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: pruner: {err}") from None


def flags(values: dict[str, Any]) -> list[str]:
    """CLI flags setting each option to its value (JSON, which jsonargparse reads as YAML; strings as they are)."""
    return [
        arg
        for option, value in values.items()
        for arg in (f"--{option}", value if isinstance(value, str) else json.dumps(value))
    ]


def check_options(config: Path, space: dict[str, BaseDistribution], fixed: dict[str, Any], search_path: Path) -> None:
    """Build (and train nothing) a fit's model, data and trainer from the base config with every option of the search
    set, each searched one to its first value: an option the CLI does not take, or a bad value, is one line."""
    first = {name: d.choices[0] if isinstance(d, CategoricalDistribution) else d.low for name, d in space.items()}
    try:
        run(["--config", str(config), *flags({**fixed, **first})], build_only=True)
    except MakemoreError as err:
        raise ConfigError(f"{search_path}: {err}") from None


# ------------------------------------------------------------------------------------------------ the root and study


def storage_key(storage: str) -> str:
    """A study database's URL as the root's record keeps it: an SQLite file by its absolute path, a password hidden."""
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        return storage  # not a URL: open_study says so
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).resolve()))
    return url.render_as_string(hide_password=True)


def check_root(root: Path, storage: str, name: str) -> None:
    """Create the search's folder; ConfigError naming it when it is a file, cannot be written to, or its STUDY_RECORD
    names another study (another search file, --study or --storage): its trial folders and report are that one's."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            f"--root {shown(root)}: a file, not a folder; give a folder for the trials and the report"
        ) from None
    except OSError as err:
        raise ConfigError(f"--root {shown(root)}: cannot create the folder ({err.strerror})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"--root {shown(root)}: read-only; give a folder the trials and the report can be written to")
    record = root / STUDY_RECORD
    if not record.exists():
        return
    try:
        held_name, held_storage = (json.loads(record.read_text())[key] for key in ("study", "storage"))
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{shown(record)}: not makemore's record of the study --root holds") from None
    if (held_name, held_storage) != (name, storage_key(storage)):
        default = held_storage == storage_key(f"sqlite:///{root / 'study.db'}")
        raise ConfigError(
            f"--root {shown(root)} holds study {held_name!r} of {held_storage}: continue it with --study {held_name}"
            f" and {'the default --storage' if default else f'--storage {held_storage}'}, or give study {name!r}"
            " another --root"
        )


def claim_root(root: Path, storage: str, name: str) -> None:
    """Write the root's STUDY_RECORD once its study has opened, atomically: of two commands racing, one writes the
    record and the other checks against it."""
    draft = root / f".{STUDY_RECORD}.{os.getpid()}"
    draft.write_text(json.dumps({"study": name, "storage": storage_key(storage)}) + "\n")
    try:
        with contextlib.suppress(FileExistsError):
            os.link(draft, root / STUDY_RECORD)  # never overwrites a record
    finally:
        draft.unlink()  # also when the folder's file system refuses the link: no stray draft in the user's root
    check_root(root, storage, name)


def open_study(storage: str, name: str, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """The study, created or loaded, with heartbeats (a trial found dead runs again), on a database checked first: one
    with tables that are not an Optuna study's is refused and left as it was (Optuna would add its tables to it)."""
    try:
        engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)  # no connection kept open
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        if not tables or OPTUNA_TABLES <= tables:
            store = optuna.storages.RDBStorage(
                storage,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
            return optuna.create_study(storage=store, study_name=name, pruner=pruner, load_if_exists=True)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--storage {storage}: not a database URL (for example sqlite:///study.db)") from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, RuntimeError, ValueError) as err:  # no driver, not a database
        first_line = (str(err) or type(err).__name__).splitlines()[0]
        raise ConfigError(f"{storage_key(storage)}: not a usable Optuna study database ({first_line})") from None
    listed = ", ".join(sorted(tables)[:TABLES_NAMED]) + (", ..." if len(tables) > TABLES_NAMED else "")
    raise ConfigError(
        f"{storage_key(storage)}: not an Optuna study database (it holds the tables {listed}); nothing was written to"
        " it. Give --storage a new file or a study's database"
    )


def check_space_fits(study: optuna.Study, space: dict[str, BaseDistribution], search_path: Path) -> None:
    """An option the study's trials drew from a distribution Optuna cannot change to this one (other choices, another
    kind, log or not): ConfigError naming the search file, before any trial."""
    for trial in study.get_trials(deepcopy=False):
        for option in set(trial.distributions) & set(space):
            try:
                optuna.distributions.check_distribution_compatibility(trial.distributions[option], space[option])
            except ValueError as err:
                raise ConfigError(
                    f"{search_path}: {option}: not the distribution study {study.study_name!r} drew it from ({err});"
                    " give this space another --study"
                ) from None


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """While the block runs, Optuna logs errors only (makemore says in one line how each trial ended) and does not warn
    that heartbeats, retries, its samplers and plots are experimental; after it, Optuna's verbosity is as it was."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


# ----------------------------------------------------------------------------------------------------- the trials


def sampler(space: dict[str, BaseDistribution], trials: int, seed: int, number: int) -> optuna.samplers.BaseSampler:
    """Optuna's sampler for trial `number`, seeded by the search's `seed` and `number` (whoever runs it, whenever):
    BruteForceSampler (every setting once before any twice) when the space has at most `trials` settings, else
    multivariate TPE (random at first)."""
    trial_seed = int.from_bytes(hashlib.sha256(f"makemore search {seed} {number}".encode()).digest()[:4], "little")
    sizes = [
        len(d.choices) if isinstance(d, CategoricalDistribution) else round((d.high - d.low) / d.step) + 1
        for d in space.values()
        if isinstance(d, CategoricalDistribution) or d.step is not None
    ]
    if len(sizes) == len(space) and math.prod(sizes) <= trials:
        return optuna.samplers.BruteForceSampler(seed=trial_seed)
    return optuna.samplers.TPESampler(seed=trial_seed, multivariate=True)


class PruneAtSGDStep(L.Callback):
    """Optuna's pruning at each validation, by val_loss at the SGD step: a pruned fit stops there as a fit does, with
    its checkpoints; the validation at max_steps never prunes. No hook per batch. (optuna-integration's callback reports
    epochs and raises out of the fit: test_the_library_callback_reports_epochs_and_crashes_the_fit.)"""

    def __init__(self, trial: optuna.Trial) -> None:
        """Args:
        trial: the Optuna trial the fit's validations are reported to.
        """
        self.trial, self.pruned = trial, False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics["val_loss"]), trainer.global_step)
        trained_to_the_end = 0 < trainer.max_steps <= trainer.global_step  # nothing left to save: it completes
        if not trained_to_the_end and self.trial.should_prune():
            self.pruned = trainer.should_stop = True


def suggest(trial: optuna.Trial, option: str, dist: BaseDistribution) -> Any:
    """The trial's value of an option, drawn from its distribution (Optuna has no public `suggest(name, dist)`)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(option, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(option, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(option, dist.low, dist.high, step=dist.step, log=dist.log)


def retried(trial: FrozenTrial) -> Optional[int]:
    """The number of the trial whose process died that `trial` runs again; None if it runs none again."""
    history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
    return history[-1] if history else None


class NotRun(Exception):
    """A trial that lost the race for the study's last place: failed unrun, its user attribute `not_run` set."""


def fit_trial(
    trial: optuna.Trial,
    config: Path,
    space: dict[str, BaseDistribution],
    fixed: dict[str, Any],
    root: Path,
    trials: int,
    seed: int,
) -> float:
    """The objective: a fit of `config` with the trial's options from `space` and the `fixed` ones, in root/trial_N;
    its best val_loss, TrialPruned if the pruner stopped it. A makemore error (diverged, bad settings) is one line in
    the log and the trial's user attribute. `trials` and `seed`: the search's, for the places and the sampler."""
    if sum(t.number < trial.number for t in trial.study.get_trials(deepcopy=False, states=PLACED)) >= trials:
        # MaxTrialsCallback counts when a trial ends: two processes can both start one for the last place; the one
        # numbered later yields (failed, marked not_run, left out of the report).
        trial.set_user_attr("not_run", True)
        say(f"trial {trial.number}: not run (the study already has its {trials} trials)")
        raise NotRun()
    # One seeded sampler a process would draw trial 0's settings again in a continued study, and alike in each worker:
    # trial N's is seeded by N, set before its first suggest (when Optuna samples; test_a_continued_search_draws_...).
    trial.study.sampler = sampler(space, trials, seed, trial.number)
    values = {option: suggest(trial, option, dist) for option, dist in space.items()}
    again = retried(trial.study.get_trials(deepcopy=False)[trial.number])
    say(f"trial {trial.number}: {' '.join(flags(values))}" + ("" if again is None else f" (trial {again} again)"))
    args = ["fit", "--config", str(config), *flags({**fixed, **values}), "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.default_root_dir", str(root / f"trial_{trial.number}")]
    pruning = PruneAtSGDStep(trial)
    try:
        trainer = run(args, [pruning]).trainer
        for name, value in ("run", trainer.log_dir), ("steps", trainer.global_step), ("max_steps", trainer.max_steps):
            trial.set_user_attr(name, value)
        if pruning.pruned:
            raise optuna.TrialPruned(f"pruned at step {trainer.global_step}")
        best = trainer.checkpoint_callback.best_model_score
        if best is None or not math.isfinite(float(best)):
            raise ConfigError(f"trial {trial.number} has no validation loss (did it validate?)")
    except MakemoreError as err:
        trial.set_user_attr("error", str(err))
        say(f"trial {trial.number} failed: {err}")
        raise
    trial.set_user_attr("best_checkpoint", trainer.checkpoint_callback.best_model_path)
    return float(best)


class TrialLog:
    """A callback after each trial: a line on how it ended (a failed one said so itself); the search stops after
    MAX_FAILURES failures in a row, listed in `failures`."""

    def __init__(self) -> None:
        self.failures: list[int] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "not_run" in trial.user_attrs:
            return
        self.failures = [*self.failures, trial.number] if trial.state == TrialState.FAIL else []
        if len(self.failures) >= MAX_FAILURES:
            study.stop()
        elif trial.state == TrialState.COMPLETE:
            best = study.best_trial
            say(f"trial {trial.number}: val_loss {trial.value:.4f} (best: trial {best.number}, {best.value:.4f})")
        elif trial.state == TrialState.PRUNED:
            say(f"trial {trial.number}: pruned at SGD step {trial.user_attrs.get('steps')}")


def run_trials(study: optuna.Study, objective: Any, trials: int, timeout: Optional[float], wait: bool) -> None:
    """This process's share of the trials, until the study holds `trials` finished ones, starting none after `timeout`
    seconds. With `wait`, then until no trial of the study is running: each finishes, or is found dead (failed,
    queued again and, while time is left, run here)."""
    log, waited = TrialLog(), set()
    deadline = None if timeout is None else time.monotonic() + timeout
    stop = optuna.study.MaxTrialsCallback(trials, states=(*FINISHED, TrialState.RUNNING))  # running holds its place
    while True:
        optuna.storages.fail_stale_trials(study)
        now = study.get_trials(deepcopy=False)
        left = None if deadline is None else deadline - time.monotonic()
        finished = sum(t.state in FINISHED for t in now)
        running = {t.number for t in now if t.state == TrialState.RUNNING}
        queued = any(t.state == TrialState.WAITING for t in now)  # a trial whose process died, to run again
        if finished < trials and (finished + len(running) < trials or queued) and (left is None or left > 0):
            study.optimize(objective, callbacks=[stop, log], catch=(MakemoreError, NotRun), timeout=left)
            if len(log.failures) >= MAX_FAILURES:
                raise ConfigError(
                    f"trials {', '.join(map(str, log.failures))} failed one after another (their errors are above); the"
                    " search stopped. Check the base config and the space"
                )
            continue
        if not wait or not running:
            return
        for number in sorted(running - waited):
            say(
                f"waiting for trial {number}, running in another process (if that process died, the trial is failed"
                f" and run again after {GRACE_PERIOD} s without a heartbeat)"
            )
        waited |= running
        time.sleep(POLL_SECONDS)


# ----------------------------------------------------------------------------------------------------- the report


def report(study: optuna.Study, root: Path, storage: str) -> str:
    """search.md's text (the trials table, the best trial); writes best.yaml and the plots, tests the best trial."""
    ran = [t for t in study.get_trials(deepcopy=False) if "not_run" not in t.user_attrs]
    complete, pruned, failed = ([t for t in ran if t.state == state] for state in (*FINISHED, TrialState.FAIL))
    counts = f"{len(ran)} trials: {len(complete)} complete, {len(pruned)} pruned"
    budgets = [t.user_attrs.get("max_steps", 0) for t in pruned]  # 0: no step budget (or a study from before it)
    if pruned and min(budgets) > 0:
        untrained = sum(budgets) - sum(t.user_attrs["steps"] for t in pruned)
        counts += f" (stopped early, {untrained:,} of their {sum(budgets):,} SGD steps not trained)"
    counts += f", {len(failed)} failed" if failed else ""
    errors = [f"- trial {t.number} failed: {t.user_attrs['error']}" for t in failed if "error" in t.user_attrs]
    lines = [f"# Search: study `{study.study_name}` ({storage_key(storage)})", "", *table(ran), "", counts]
    lines += ["", *errors] if errors else []
    if not complete:
        return "\n".join([*lines, "", "No trial completed: no best settings yet."])
    # best.yaml is the best trial's config as its fit saved it, less the run folder and progress bar the search set
    best, best_config = study.best_trial, root / "best.yaml"
    config = yaml.safe_load((Path(best.user_attrs["run"]) / "config.yaml").read_text())
    for option in ("default_root_dir", "enable_progress_bar"):
        config["trainer"].pop(option, None)
    header = f"# makemore search: trial {best.number}'s config, the best of study {study.study_name} (val_loss"
    header += f" {best.value:.4f})\n"
    best_config.write_text(header + yaml.safe_dump(config, sort_keys=False))
    test_loss = test_once(study, best, best_config, root)
    tested = "no test split" if test_loss is None else f"test_loss {test_loss:.4f} (its checkpoint tested once)"
    lines += [
        "",
        f"Best: trial {best.number}, val_loss {best.value:.4f}, {tested}; settings: `{shown(best_config)}` (`python"
        f" -m makemore fit --config {shown(best_config)}`).",
    ]
    return "\n".join(lines + plots(study, root, len(complete)))


def table(trials: list[FrozenTrial]) -> list[str]:
    """search.md's table: a trial a row (state, val_loss, SGD steps, options), a rerun of a dead trial's noted."""
    options = list(dict.fromkeys(option for t in trials for option in t.params))
    rerun_as = {retried(t): t.number for t in trials if retried(t) is not None}
    lines = ["| trial | state | val_loss | steps | " + " | ".join(f"`{o}`" for o in options) + " |"]
    lines.append("|---" * (4 + len(options)) + "|")
    for t in trials:
        number = f"{t.number}" + ("" if retried(t) is None else f" (trial {retried(t)} again)")
        number += f" (its process died; run again as trial {rerun_as[t.number]})" if t.number in rerun_as else ""
        value = "-" if t.value is None else f"{t.value:.4f}"
        cells = [
            number,
            t.state.name.lower(),
            value,
            t.user_attrs.get("steps", "-"),
            *(t.params.get(o, "-") for o in options),
        ]
        lines.append("| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells) + " |")
    return lines


def test_once(study: optuna.Study, best: FrozenTrial, best_config: Path, root: Path) -> Optional[float]:
    """The best trial's test loss, evaluated once and kept in the study; None when its data has no test split (a text
    split as the lecture splits it, 90/10)."""
    if study.user_attrs.get("tested") != best.number:
        checkpoint, test_loss = best.user_attrs["best_checkpoint"], None
        fingerprint = read_checkpoint(checkpoint)["hyper_parameters"]["split_fingerprint"]
        if any(size > 0 for name, size in fingerprint.items() if name.startswith("test_") and isinstance(size, int)):
            argv = ["test", "--config", str(best_config), "--ckpt_path", checkpoint]
            with contextlib.redirect_stdout(sys.stderr):  # the test's table: search.md is the command's output
                cli = run([*argv, "--trainer.default_root_dir", str(root / f"trial_{best.number}")])
            test_loss = float(cli.trainer.callback_metrics["test_loss"])
        study.set_user_attr("test_loss", test_loss)
        study.set_user_attr("tested", best.number)
    return study.user_attrs["test_loss"]


def plots(study: optuna.Study, root: Path, complete: int) -> list[str]:
    """Optuna's optimisation history and (from 2 complete trials) parameter importances as PNGs in root; search.md's
    lines that show them."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    drawn = {"history": ("optimisation history", vis.plot_optimization_history)}
    if complete >= 2:
        drawn["importances"] = ("parameter importances", vis.plot_param_importances)
    lines = []
    for name, (title, draw) in drawn.items():
        try:
            figure = draw(study).figure
        except (ValueError, RuntimeError) as err:
            say(f"no {name}.png: {err}")
            continue
        figure.tight_layout()
        figure.savefig(root / f"{name}.png", dpi=PLOT_DPI)
        plt.close(figure)
        lines += ["", f"![{title}]({name}.png)"]
    return lines


# ---------------------------------------------------------------------------------------------------- the command


def search(
    config: str,
    search: str,
    trials: int = 20,
    workers: int = 1,
    root: str = "lightning_logs/search",
    storage: Optional[str] = None,
    study: Optional[str] = None,
    seed: int = 0,
    timeout: Optional[float] = None,
) -> None:
    """Search hyperparameters with Optuna: each trial a fit of --config with options drawn from --search.

    Args:
        config: the base config (for example configs/challenge.yaml); each trial changes only the searched options.
        search: the search space file (see configs/search/challenge.yaml).
        trials: finished trials (complete or pruned) the study holds in the end, counted in the study, whichever
            command or process ran them; running again with more continues it.
        workers: processes running trials at once, sharing the study (0: only run trials, as each extra worker
            process does; no waiting for other processes' trials, no report).
        root: the study's folder: its trials' run folders, the database and the results (one study a root).
        storage: the study's database URL (default: sqlite:///ROOT/study.db).
        study: the study's name (default: the search file's name).
        seed: the study's seed: trial N's sampler is seeded by it and N, whichever process runs trial N.
        timeout: seconds after which no worker starts another trial (the ones running finish); none: no limit.
    """
    config_path, search_path, root_path = Path(config), Path(search), Path(root).resolve()
    if trials < 1 or workers < 0:
        raise ConfigError(f"--trials must be at least 1 and --workers at least 0, got {trials} and {workers}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout must be above 0 seconds, got {timeout}")
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: no such config file")
    space, pruner, fixed = read_space(search_path)
    storage, name = storage or f"sqlite:///{root_path / 'study.db'}", study or search_path.stem
    check_root(root_path, storage, name)
    check_options(config_path, space, fixed, search_path)
    with optuna_quiet():
        optuna_study = open_study(storage, name, median_pruner(pruner, search_path))
        claim_root(root_path, storage, name)
        check_space_fits(optuna_study, space, search_path)
        options = {"config": config, "search": search, "trials": trials, "root": root_path, "storage": storage}
        options.update(study=name, seed=seed, workers=0, **({} if timeout is None else {"timeout": timeout}))
        command = [sys.executable, "-m", "makemore", "search", *(f"--{k}={v}" for k, v in options.items())]
        others = [subprocess.Popen(command) for _ in range(1, workers)]
        objective = functools.partial(
            fit_trial, config=config_path, space=space, fixed=fixed, root=root_path, trials=trials, seed=seed
        )
        run_trials(optuna_study, objective, trials, timeout, wait=workers > 0)
        if workers == 0:
            return
        if any(worker.wait() for worker in others):
            say("a worker process failed (its error is above)")
        text = report(optuna_study, root_path, storage)
    (root_path / "search.md").write_text(text + "\n")
    print(text)
