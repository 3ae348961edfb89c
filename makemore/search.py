"""`makemore search`: a hyperparameter search with Optuna over any option of the CLI, the space in YAML.

Each trial is a normal `fit` (its own run folder under --root, with TensorBoard logs) with the trial's
options on top of the base config. TPE proposes the options; a median pruner stops a trial whose val_loss
at a validation is worse than the median of the earlier trials' at the same SGD step (`pruning_callback`:
optuna-integration's Lightning pruning callback, reporting at the SGD step, given to the trial's fit through
`makemore.lightning_cli.run`'s callbacks). The study lives in a database (SQLite by default, under --root):
several workers (`--workers`, each a process) share it, and a search that was killed resumes where it stopped when run
again with the same options. Selection is on val_loss only; at the end the best trial's checkpoint is tested
once, and the trials table, the best settings as a ready config, and Optuna's history and importance plots
are written.

One study, however many commands and processes run it: `--trials N` is the number of finished (complete or
pruned) trials the study holds in the end, counted in the study, not per process; a trial's draws depend
only on the study's seed and the trial's number (`StudySampler`), so a study continued, resumed or shared
samples as one process would, and no two trials get the same settings unless the space has no others left.
A trial is run only if it is among the study's first N (`claim`); one that lost a race for the last places
is marked failed, not run, and left out of the report. A trial whose process died (no heartbeat for
GRACE_PERIOD seconds) is marked failed and queued again with its settings (Optuna's heartbeat and
RetryHeartbeatStaleTrialCallback); the command that reports waits for every running trial to end or be
found dead first. A database that holds tables and is not an Optuna study is refused before anything is
written to it (`check_storage`). A root holds one study (`STUDY_RECORD`): another is refused, as its trial_N
folders and report would be the first study's. A trial that fails with a makemore error is one line in the log
and the report (Optuna's traceback of it is dropped).

A search space file:

    space:                                   # CLI options (as after --), each a distribution
      model.learning_rate: {low: 0.0003, high: 0.03, log: true}
      model.net.init_args.n_hidden: {low: 100, high: 500, step: 50}   # integers when low and high are
      data.block_size: {choices: [3, 5, 8]}
    pruner: {n_startup_trials: 5, n_warmup_steps: 10000}    # optional: optuna.pruners.MedianPruner's
    fixed:                                   # optional: options every trial sets alike (e.g. a shorter budget)
      trainer.max_steps: 20000
"""

import contextlib
import difflib
import hashlib
import inspect
import io
import itertools
import json
import logging
import math
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import lightning as L
import yaml

from makemore._compat import optuna_trial_logger
from makemore.errors import ConfigError, MakemoreError

HEARTBEAT_INTERVAL = 5  # seconds between a running trial's heartbeats in the study's database
GRACE_PERIOD = 30  # seconds without a heartbeat after which a running trial's process is taken for dead
MAX_RETRY = 2  # times a trial whose process died is run again with its settings before it stays failed
COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # the states of the trials that take a place in the study


def pruning_callback(trial: Any) -> L.Callback:
    """optuna-integration's PyTorchLightningPruningCallback for `trial` on val_loss, reporting at the SGD step.

    A subclass that overrides one method, on_validation_end: the library's is wrong for makemore in three ways
    (the first two measured by tests/test_search.py::test_the_library_callback_reports_epochs_and_crashes_the_fit):
    - it reports val_loss at `current_epoch`. A makemore epoch is data.val_every_n_steps SGD steps, while the
      search file's pruner counts SGD steps (n_warmup_steps 4000 in configs/search/challenge.yaml, where a trial
      validates at steps 2000, 4000, ..., 10000, epochs 0 to 4: a warmup that never ends, nothing is pruned).
      And with trainer.val_check_interval several validations share an epoch: Optuna keeps the first value of a
      step and ignores the others with a warning, so the pruner would judge a stale one. Here: trainer.global_step.
    - it stops a pruned trial by raising TrialPruned inside the fit, which Lightning handles as a crash: the fit
      ends before the validation's checkpoint is saved (a pruned trial keeps none, not even last.ckpt), its logger
      is finalized as failed, and `run` returns no trainer, so the trial's run folder and SGD steps (search.md's
      steps saved by pruning) are unknown. Here it sets trainer.should_stop: the fit ends at that validation as a
      fit does, and the objective raises TrialPruned after it, when `pruned` is set.
    - it prunes at the last validation too (at trainer.max_steps), a trial trained to the end. Here that one is
      reported and never prunes: the trial completes.
    Inherited: __init__ (the trial, the monitor) and on_fit_start (its storage check under DDP; a search trial runs
    in one process: under DDP Lightning starts the other ranks by running the `makemore search` command again).
    Its hooks are on_fit_start and on_validation_end, none per batch: the fit keeps many SGD steps a Lightning
    batch (makemore.lightning_features.batch_readers names nothing; tested).
    """
    from optuna_integration import PyTorchLightningPruningCallback

    class PruneAtSGDStep(PyTorchLightningPruningCallback):
        pruned = False

        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
                return
            self._trial.report(float(trainer.callback_metrics[self.monitor]), trainer.global_step)
            if trainer.global_step >= trainer.max_steps > 0:  # trained to the end: nothing left to save, it completes
                return
            if self._trial.should_prune():
                self.pruned = True
                trainer.should_stop = True

    return PruneAtSGDStep(trial, monitor="val_loss")


def read_space(path: Path) -> tuple[dict[str, dict], dict, dict[str, Any]]:
    """A search file's space ({option: distribution}), pruner arguments and fixed options; ConfigError if bad."""
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
    for option, spec in content["space"].items():
        where = f"{path}: {option}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: give {{choices: [...]}} or {{low: ..., high: ...}}")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"] or set(spec) != {"choices"}:
                raise ConfigError(f"{where}: choices must be a non-empty list, alone")
            distribution(spec, where)
            continue
        if not {"low", "high"} <= set(spec) <= {"low", "high", "log", "step"}:
            raise ConfigError(f"{where}: a range is {{low, high}} with optional log or step, got {sorted(spec)}")
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"{where}: low and high must be numbers")
        if not low < high:
            raise ConfigError(f"{where}: an empty or inverted range (low {low}, high {high})")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"{where}: a log range needs low above 0 (got {low})")
        distribution(spec, where)
    pruner = content.get("pruner") or {}
    if not isinstance(pruner, dict):
        raise ConfigError(f"{path}: pruner must be a mapping of optuna.pruners.MedianPruner's arguments")
    median_pruner(pruner, path)
    fixed = content.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{path}: fixed must be a mapping of CLI options to the value every trial sets")
    both = set(fixed) & set(content["space"])
    if both:
        raise ConfigError(f"{path}: {sorted(both)} both searched and fixed; give each option once")
    return content["space"], pruner, fixed


def distribution(spec: dict, where: str = "") -> Any:
    """The Optuna distribution of a space entry: integers when low and high are (and step, if given)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    step = spec.get("step")
    try:
        if "choices" in spec:
            # Optuna's choices are numbers, strings, booleans or null: a list or mapping (AdamW's betas) is searched
            # as its JSON text, which the command line reads back as the list (and best.yaml writes as one).
            choices = [json.dumps(c) if isinstance(c, (list, dict)) else c for c in spec["choices"]]
            return CategoricalDistribution(choices)
        if all(isinstance(spec.get(k, 1), int) for k in ("low", "high", "step")):
            return IntDistribution(
                spec["low"], spec["high"], log=bool(spec.get("log")), step=1 if step is None else step
            )
        if isinstance(spec["low"], int) and isinstance(spec["high"], int):
            raise ValueError(f"an integer range needs an integer step, got {step}")
        return FloatDistribution(spec["low"], spec["high"], log=bool(spec.get("log")), step=step)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None


def median_pruner(arguments: dict, path: Path) -> Any:
    """optuna.pruners.MedianPruner(**arguments); ConfigError naming the search file for a bad name or value."""
    import optuna

    names = [name for name in inspect.signature(optuna.pruners.MedianPruner).parameters if name != "self"]
    for key in arguments:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{path}: pruner: unknown argument {key!r}{hint}; MedianPruner takes {', '.join(names)}")
    try:
        return optuna.pruners.MedianPruner(**arguments)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: pruner: {err}") from None


def suggest(trial: Any, option: str, dist: Any) -> Any:
    """The trial's value of an option, drawn from its distribution (as the study's sampler proposed it)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(option, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(option, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(option, dist.low, dist.high, step=dist.step, log=dist.log)


def values_of(dist: Any) -> Optional[list]:
    """Every value a distribution can take, in order; None for a continuous one."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    if dist.step is None:
        return None
    return [k * dist.step + dist.low for k in range(round((dist.high - dist.low) / dist.step) + 1)]


def setting(space: dict[str, Any], params: dict[str, Any]) -> Optional[tuple]:
    """A trial's settings as a comparable key (a float on a step grid by its grid index); None if not of the space."""
    from optuna.distributions import FloatDistribution

    if set(params) != set(space):
        return None
    key = []
    for name in sorted(space):
        dist, value = space[name], params[name]
        if isinstance(dist, FloatDistribution) and dist.step is not None:
            value = round((value - dist.low) / dist.step)
        key.append((name, value))
    return tuple(key)


def space_size(space: dict[str, Any]) -> Optional[int]:
    """How many settings the space has; None when it has a continuous option."""
    sizes = [values_of(dist) for dist in space.values()]
    return math.prod(len(values) for values in sizes) if all(v is not None for v in sizes) else None


def taken(study: Any, space: dict[str, Any], number: int) -> set[tuple]:
    """The settings of the study's trials that hold a place in it (finished, running or queued), but trial `number`."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=tuple(TrialState[state] for state in COUNTED))
    return {setting(space, t.params) for t in trials if t.number != number} - {None}


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial `number`'s draws: the study's seed and the trial's number, whoever runs it, whenever."""
    return int.from_bytes(hashlib.sha256(f"makemore search {seed} {number}".encode()).digest()[:4], "little")


def _study_sampler() -> type:
    import numpy as np
    import optuna
    from optuna.trial import TrialState

    class StudySampler(optuna.samplers.BaseSampler):
        """TPE (random for its first trials) whose draws for trial N are seeded by (seed, N), never by the process:
        a study continued, resumed or shared by several processes samples as one process would. It does not
        propose the settings of a trial the study holds (finished, running or queued) while the space has others.
        """

        ATTEMPTS = 10  # draws of TPE (or random) before an untried setting is picked at random

        def __init__(self, seed: int, space: dict[str, Any]) -> None:
            self.seed, self.space = seed, space
            self._seed_for(-1)

        def _seed_for(self, number: int) -> None:
            seed = trial_seed(self.seed, number)
            self._tpe = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
            self._random = optuna.samplers.RandomSampler(seed=seed)
            self._rng = np.random.RandomState(seed)

        def reseed_rng(self) -> None:  # the draws are seeded per trial, in before_trial
            pass

        def before_trial(self, study: Any, trial: Any) -> None:
            self._seed_for(trial.number)
            self._tpe.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {name: dist for name, dist in self.space.items() if not dist.single()}

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            if not search_space or trial.params or "fixed_params" in trial.system_attrs:  # a retried or queued trial
                return {}
            seen = taken(study, self.space, trial.number)
            states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            earlier = study.get_trials(deepcopy=False, states=states)
            # TPE models the options whose distribution every earlier trial shares (a space file may have changed)
            modelled = {n: d for n, d in search_space.items() if all(t.distributions.get(n, d) == d for t in earlier)}
            params: dict[str, Any] = {}
            for _ in range(self.ATTEMPTS):
                params = self._tpe.sample_relative(study, trial, modelled) if modelled else {}  # {}: random trials
                params = {
                    name: params[name] if name in params else self._random.sample_independent(study, trial, name, dist)
                    for name, dist in search_space.items()
                }
                if setting(self.space, {**params, **self._single()}) not in seen:
                    return params
            return self._untried(seen) or params  # none left: the space is exhausted, a setting is repeated

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            return self._tpe.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self._tpe.after_trial(study, trial, state, values)

        def _single(self) -> dict[str, Any]:
            """The options whose distribution has one value (Optuna does not sample them)."""
            return {
                name: getattr(d, "choices", [getattr(d, "low", None)])[0]
                for name, d in self.space.items()
                if d.single()
            }

        def _untried(self, seen: set[tuple]) -> Optional[dict[str, Any]]:
            """A setting of a discrete space no trial holds, drawn uniformly; None if there is none."""
            names = [name for name, dist in self.space.items() if not dist.single()]
            grids = [values_of(self.space[name]) for name in names]
            size = space_size(self.space)
            if size is None or size <= len(seen):
                return None
            if size > 100_000:  # few taken of many: drawing finds a free one at once
                draws: Any = ([grid[self._rng.randint(len(grid))] for grid in grids] for _ in range(1000))
            else:
                every = list(itertools.product(*grids))
                draws = (every[i] for i in self._rng.permutation(len(every)))
            for draw in draws:
                params = dict(zip(names, draw))
                if setting(self.space, {**params, **self._single()}) not in seen:
                    return params
            return None

    return StudySampler


def flags(values: dict[str, Any]) -> list[str]:
    """CLI flags setting each option to its value (JSON, which jsonargparse reads as YAML; strings as they are)."""
    return [
        arg
        for option, value in values.items()
        for arg in (f"--{option}", value if isinstance(value, str) else json.dumps(value))
    ]


def check_options(config: Path, space: dict[str, dict], fixed: dict[str, Any], search_path: Path) -> None:
    """Parse the base config with every option of the search set: a name the CLI does not take is one line."""
    from makemore.lightning_cli import run

    example = {option: spec["choices"][0] if "choices" in spec else spec["low"] for option, spec in space.items()}
    example = {**fixed, **example}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            run(["fit", "--config", str(config), *flags(example), "--print_config"])
    except MakemoreError as err:
        raise ConfigError(f"{search_path}: {err}") from None
    except SystemExit as done:  # --print_config exits 0 after parsing
        if done.code not in (0, None):
            raise ConfigError(f"{search_path}: the options do not parse with {config}") from None


def check_root(root: Path) -> None:
    """Create the search's folder; ConfigError naming it when it is a file or cannot be written to (its trial folders,
    best.yaml and report go there), before anything is written."""
    from makemore.lightning_cli import shown

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


STUDY_RECORD = "study.json"  # in --root: the one study whose trial folders, best.yaml and report the folder holds


def storage_key(storage: str) -> str:
    """A study database's URL as the root's record keeps it: an SQLite file by its absolute path, a password hidden."""
    import sqlalchemy
    import sqlalchemy.exc

    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        return storage  # not a URL: check_storage says so
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).resolve()))
    return url.render_as_string(hide_password=True)


def check_root_study(root: Path, storage: str, name: str) -> Optional[dict]:
    """The study root holds (its record), None if none yet; ConfigError, before the study is opened, if it holds
    another: its trial_N folders, best.yaml and search.md would be another study's."""
    from makemore.lightning_cli import shown

    record = root / STUDY_RECORD
    if not record.exists():
        return None
    try:
        held = json.loads(record.read_text())
        held_name, held_storage = held["study"], held["storage"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{shown(record)}: not makemore's record of the study --root holds") from None
    if (held_name, held_storage) != (name, storage_key(storage)):
        default = held_storage == storage_key(f"sqlite:///{root / 'study.db'}")
        its_storage = "the default --storage" if default else f"--storage {held_storage}"
        raise ConfigError(
            f"--root {shown(root)} holds study {held_name!r} of {shown_storage(held_storage)}: continue it with"
            f" --study {held_name} and {its_storage}, or give study {name!r} another --root"
        )
    return held


def claim_root(root: Path, storage: str, study: Any) -> None:
    """Record in root that it holds `study` (opened on `storage`), atomically: of two commands racing, one writes the
    record and the other checks against it. A root with trial folders and no record (a search before makemore kept
    one) is claimed only by a study with trials: a new study there is refused."""
    from makemore.lightning_cli import shown

    if list(root.glob("trial_*")) and not study.get_trials(deepcopy=False):
        raise ConfigError(
            f"--root {shown(root)} holds the trials of another search (no {STUDY_RECORD} names its study); continue"
            f" that study with its --study, or give study {study.study_name!r} another --root"
        )
    record = {"study": study.study_name, "storage": storage_key(storage)}
    draft = root / f".{STUDY_RECORD}.{os.getpid()}"
    draft.write_text(json.dumps(record) + "\n")
    try:
        os.link(draft, root / STUDY_RECORD)  # fails if the record exists: never overwritten
    except FileExistsError:
        check_root_study(root, storage, study.study_name)
    finally:
        draft.unlink()


OPTUNA_TABLES = {"studies", "trials", "version_info"}  # tables every Optuna study database has


def check_storage(storage: str) -> None:
    """Refuse a database that holds tables and is not an Optuna study database, before Optuna opens it (Optuna would
    add its tables to it). An SQLite file is opened read-only with sqlite3; another database is only read."""
    import sqlalchemy
    import sqlalchemy.exc

    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--storage {storage}: not a database URL (for example sqlite:///study.db)") from None
    tables: set[str] = set()
    try:
        if url.get_backend_name() == "sqlite":
            path = url.database
            if not path or path == ":memory:" or not Path(path).exists():
                return  # a new database
            with contextlib.closing(sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)) as db:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        else:
            engine = sqlalchemy.create_engine(url)
            try:
                tables = set(sqlalchemy.inspect(engine).get_table_names())
            finally:
                engine.dispose()
    except (sqlite3.Error, sqlalchemy.exc.SQLAlchemyError, ImportError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{shown_storage(storage)}: not a usable Optuna study database ({message})") from None
    if tables and not OPTUNA_TABLES <= tables:
        listed = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(
            f"{shown_storage(storage)}: not an Optuna study database (it holds the tables {listed}); nothing was"
            " written to it. Give --storage a new file or a study's database"
        )


def open_study(storage: str, name: str, seed: int, pruner: Any, space: dict[str, Any]) -> Any:
    """The study, created or loaded, on a checked database: heartbeats on, a dead trial retried, the StudySampler."""
    import optuna
    import sqlalchemy.exc

    check_storage(storage)
    with warnings.catch_warnings():  # Optuna marks the heartbeat and its retry callback experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            store = optuna.storages.RDBStorage(
                storage,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
        except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError, ImportError) as err:
            message = str(err).splitlines()[0]
            raise ConfigError(f"{shown_storage(storage)}: not a usable Optuna study database ({message})") from None
    try:
        return optuna.create_study(
            storage=store,
            study_name=name,
            direction="minimize",
            sampler=_study_sampler()(seed, space),
            pruner=pruner,
            load_if_exists=True,
        )
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as err:
        raise ConfigError(f"{shown_storage(storage)}: study {name}: {str(err).splitlines()[0]}") from None


def check_space_fits(study: Any, space: dict[str, Any], search_path: Path) -> None:
    """An option the study's trials drew from a distribution Optuna cannot change to this one (other choices, another
    kind, log or not): ConfigError naming the search file, before any trial."""
    from optuna.distributions import check_distribution_compatibility

    for trial in study.get_trials(deepcopy=False):
        for option, drawn in trial.distributions.items():
            if option in space:
                try:
                    check_distribution_compatibility(drawn, space[option])
                except ValueError as err:
                    raise ConfigError(
                        f"{search_path}: {option}: not the distribution study {study.study_name!r} drew it from ({err});"
                        " give this space another --study"
                    ) from None


class NotRun(Exception):
    """A trial that is not run (see `claim`); marked failed, with the reason in its user attribute `not_run`."""


@contextlib.contextmanager
def quiet_trials() -> Iterator[set[int]]:
    """While the block runs, Optuna's failure warnings (with a traceback) are dropped for the trials whose numbers
    the block puts in the set yielded: those makemore reported in one line, not run (no failures) or failed with a
    makemore error (the error says all a traceback would)."""
    numbers: set[int] = set()

    def keep(record: logging.LogRecord) -> bool:
        return not any(record.getMessage().startswith(f"Trial {n} failed") for n in numbers)

    logger = optuna_trial_logger()
    logger.addFilter(keep)
    try:
        yield numbers
    finally:
        logger.removeFilter(keep)


def claim(study: Any, trial: Any, space: dict[str, Any], trials: int) -> Optional[str]:
    """None if the trial may run, else why not: it runs only if fewer than `trials` trials numbered before it hold a
    place in the study (finished, running or queued) and, while the space has other settings, none of them has its
    settings. The database numbers trials one after another, so of two processes racing for a place the later
    trial yields."""
    from optuna.trial import TrialState

    states = tuple(TrialState[state] for state in COUNTED)
    earlier = [t for t in study.get_trials(deepcopy=False, states=states) if t.number < trial.number]
    if len(earlier) >= trials:
        return f"the study already has its {trials} trials"
    mine, size = setting(space, trial.params), space_size(space)
    keys = {setting(space, t.params) for t in earlier} - {None}
    if mine in keys and (size is None or len(keys) < size):
        return f"the settings of trial {next(t.number for t in earlier if setting(space, t.params) == mine)}"
    return None


def fail_dead_trials(study: Any) -> None:
    """Running trials without a heartbeat for GRACE_PERIOD seconds: failed, and queued again with their settings."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_trials(
    study: Any,
    config: Path,
    space: dict[str, Any],
    fixed: dict[str, Any],
    root: Path,
    trials: int,
    timeout: Optional[float] = None,
    wait: bool = True,
) -> None:
    """This process's share of the trials, until the study holds `trials` finished (complete or pruned) ones,
    starting none after `timeout` seconds. With `wait`, then until no trial of the study is running: each
    finishes, or is found dead (failed, queued again and, while time is left, run here)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from makemore.lightning_cli import run

    def objective(trial: Any) -> float:
        values = {option: suggest(trial, option, dist) for option, dist in space.items()}
        why = claim(study, trial, space, trials)
        if why is not None:
            trial.set_user_attr("not_run", why)
            quiet.add(trial.number)
            print(f"makemore search: trial {trial.number}: not run ({why})", file=sys.stderr, flush=True)
            raise NotRun(why)
        folder = root / f"trial_{trial.number}"
        args = ["fit", "--config", str(config), *flags({**fixed, **values}), "--trainer.default_root_dir", str(folder)]
        args += ["--trainer.enable_progress_bar", "false"]
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        retry = frozen.system_attrs.get("retry_history")
        again = f" (trial {retry[-1]} again: its process died)" if retry else ""
        print(f"makemore search: trial {trial.number}: {' '.join(flags(values))}{again}", file=sys.stderr, flush=True)
        try:
            return fit_trial(trial, args)
        except MakemoreError as err:  # one line here and in the report; Optuna's traceback of it is dropped
            trial.set_user_attr("error", str(err))
            quiet.add(trial.number)
            print(f"makemore search: trial {trial.number} failed: {err}", file=sys.stderr, flush=True)
            raise

    def fit_trial(trial: Any, args: list[str]) -> float:
        """The trial's fit: its best val_loss; TrialPruned if the pruner stopped it."""
        pruning = pruning_callback(trial)
        trainer = run(args, callbacks=[pruning]).trainer
        trial.set_user_attr("run", str(Path(trainer.log_dir)))
        trial.set_user_attr("steps", trainer.global_step)
        if pruning.pruned:
            raise optuna.TrialPruned(f"pruned at step {trainer.global_step}")
        best = trainer.checkpoint_callback.best_model_score
        if best is None or not math.isfinite(float(best)):
            raise ConfigError(f"trial {trial.number} has no validation loss (did it validate?)")
        trial.set_user_attr("best_checkpoint", trainer.checkpoint_callback.best_model_path)
        return float(best)

    failures: list[str] = []

    def stop_after_failures(study: Any, trial: Any) -> None:
        """A trial that fails (diverged, bad settings) is recorded and the search goes on; three in a row stop it."""
        if "not_run" in trial.user_attrs:
            return
        failures[:] = [*failures, trial.number] if trial.state == TrialState.FAIL else []
        if len(failures) >= 3:
            study.stop()

    finished, placed = (
        (TrialState.COMPLETE, TrialState.PRUNED),
        (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    waited: set[int] = set()
    with quiet_trials() as quiet:
        while True:
            fail_dead_trials(study)
            now = study.get_trials(deepcopy=False)
            left = None if deadline is None else deadline - time.monotonic()
            place = sum(t.state in placed for t in now) < trials or any(t.state == TrialState.WAITING for t in now)
            if sum(t.state in finished for t in now) < trials and place and (left is None or left > 0):
                callbacks = [MaxTrialsCallback(trials, states=placed), stop_after_failures]
                study.optimize(objective, callbacks=callbacks, catch=(MakemoreError, NotRun), timeout=left)
                if len(failures) >= 3:
                    raise ConfigError(
                        f"trials {', '.join(map(str, failures))} failed one after another (their errors are above); the"
                        " search stopped. Check the base config and the space"
                    )
                continue
            running = [t.number for t in now if t.state == TrialState.RUNNING]
            if not wait or not running:
                return
            for number in sorted(set(running) - waited):
                print(
                    f"makemore search: waiting for trial {number}, running in another process (if that process died,"
                    f" the trial is failed and run again after {GRACE_PERIOD} s without a heartbeat)",
                    file=sys.stderr,
                    flush=True,
                )
            waited |= set(running)
            time.sleep(1)


def report(study: Any, config: Path, fixed: dict[str, Any], root: Path, storage: str) -> str:
    """The trials table, best.yaml, the plots, and the best trial's test loss (evaluated once); search.md's text."""
    from optuna.trial import TrialState

    from makemore.lightning_cli import run, shown

    drawn = study.get_trials(deepcopy=False)
    finished = [t for t in drawn if "not_run" not in t.user_attrs]  # the trials that ran (or run, or wait to)
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    failed = [t for t in finished if t.state == TrialState.FAIL]
    options = list(dict.fromkeys(option for t in finished for option in t.params))
    again = {t.system_attrs["retry_history"][-1]: t.number for t in finished if t.system_attrs.get("retry_history")}
    lines = [f"# Search: study `{study.study_name}` ({shown_storage(storage)})", ""]
    lines.append("| trial | state | val_loss | steps | " + " | ".join(f"`{o}`" for o in options) + " |")
    lines.append("|---" * (4 + len(options)) + "|")
    for t in finished:
        number = f"{t.number}"
        if t.system_attrs.get("retry_history"):
            number += f" (trial {t.system_attrs['retry_history'][-1]} again)"
        if t.number in again:
            number += f" (its process died; run again as trial {again[t.number]})"
        value = f"{t.value:.4f}" if t.value is not None else "-"
        cells = [cell(t.params.get(o, "-")) for o in options]
        lines.append(
            f"| {number} | {t.state.name.lower()} | {value} | {t.user_attrs.get('steps', '-')} | "
            + " | ".join(cells)
            + " |"
        )
    base = yaml.safe_load(config.read_text())
    for option, value in fixed.items():
        set_option(base, option, value)
    max_steps = base.get("trainer", {}).get("max_steps")
    saved = sum(max_steps - t.user_attrs.get("steps", max_steps) for t in pruned) if max_steps else None
    lines += ["", f"{len(finished)} trials: {len(complete)} complete, {len(pruned)} pruned"]
    if saved is not None and pruned:
        lines[-1] += f" (stopped early, {saved:,} of their {len(pruned) * max_steps:,} SGD steps not trained)"
    if failed:
        lines[-1] += f", {len(failed)} failed"
    if len(drawn) > len(finished):
        lines[-1] += (
            f"; {len(drawn) - len(finished)} more drawn but not run (the study had its trials or their settings),"
            " not listed"
        )
    errors = [f"- trial {t.number} failed: {t.user_attrs['error']}" for t in failed if "error" in t.user_attrs]
    lines += ["", *errors] if errors else []
    if not complete:
        return "\n".join(lines + ["", "No trial completed: no best settings yet."])
    best = study.best_trial
    best_config = root / "best.yaml"
    for option, value in best.params.items():
        set_option(base, option, from_json(value))
    header = (
        f"# makemore search: the best of {len(complete)} complete trials of study {study.study_name}, val_loss"
        f" {best.value:.4f}\n# (the base config {config} with the search's fixed and best options)\n"
    )
    best_config.write_text(header + yaml.safe_dump(base, sort_keys=False))
    if study.user_attrs.get("tested") != best.number and not has_test_split(best.user_attrs["best_checkpoint"]):
        study.set_user_attr("test_loss", None)  # a text split as the lecture splits it (90/10) has no test share
        study.set_user_attr("tested", best.number)
    if study.user_attrs.get("tested") != best.number:  # the winner's test loss, evaluated once
        with contextlib.redirect_stdout(io.StringIO()):
            cli = run(
                [
                    "test",
                    "--config",
                    str(best_config),
                    "--ckpt_path",
                    best.user_attrs["best_checkpoint"],
                    "--trainer.default_root_dir",
                    str(root / f"trial_{best.number}"),
                ]
            )
        study.set_user_attr("test_loss", float(cli.trainer.callback_metrics["test_loss"]))
        study.set_user_attr("tested", best.number)
    test_loss = study.user_attrs["test_loss"]
    tested = "no test split" if test_loss is None else f"test_loss {test_loss:.4f} (its checkpoint tested once)"
    lines += [
        "",
        f"Best: trial {best.number}, val_loss {best.value:.4f}, {tested}; settings: `{shown(best_config)}` (`python"
        f" -m makemore fit --config {shown(best_config)}`).",
    ]
    plots(study, root, len(complete))
    for name, title in (("history.png", "optimisation history"), ("importances.png", "parameter importances")):
        if (root / name).exists():
            lines += ["", f"![{title}]({name})"]
    return "\n".join(lines)


def from_json(value: Any) -> Any:
    """A choice searched as JSON text (a list or a mapping, see `distribution`) as that list or mapping again."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def has_test_split(checkpoint: str) -> bool:
    """Whether the data a checkpoint was trained on has a test split (a text's 90/10 split has none), as its split
    fingerprint records it."""
    from makemore.checkpoint import read_checkpoint

    fingerprint = read_checkpoint(checkpoint)["hyper_parameters"]["split_fingerprint"]
    return any(size > 0 for name, size in fingerprint.items() if name.startswith("test_") and isinstance(size, int))


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits (best.yaml keeps them whole)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def shown_storage(storage: str) -> str:
    """A study's database URL, an SQLite file's path shown as the user would type it."""
    from makemore.lightning_cli import shown

    prefix = "sqlite:///"
    return prefix + shown(storage.removeprefix(prefix)) if storage.startswith(prefix) else storage


def set_option(config: dict, option: str, value: Any) -> None:
    """Set a dotted CLI option in a nested config, under init_args where the config names a class_path."""
    keys = option.split(".")
    node = config
    for key in keys[:-1]:
        if "class_path" in node and key not in ("class_path", "init_args"):
            node = node.setdefault("init_args", {})
        node = node.setdefault(key, {})
    if "class_path" in node and keys[-1] not in ("class_path", "init_args"):
        node = node.setdefault("init_args", {})
    node[keys[-1]] = value


def plots(study: Any, root: Path, complete: int) -> None:
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as vis

    for name, draw in (("history.png", vis.plot_optimization_history), ("importances.png", vis.plot_param_importances)):
        if name == "importances.png" and complete < 2:
            continue
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = draw(study)
        except (ValueError, RuntimeError) as err:
            print(f"makemore search: no {name}: {err}", file=sys.stderr)
            continue
        ax.figure.tight_layout()
        ax.figure.savefig(root / name, dpi=100)
        plt.close(ax.figure)


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
        seed: the study's seed: trial N's draws depend on it, N and the trials before N, whichever process draws them.
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
    check_root(root_path)
    storage = storage or f"sqlite:///{root_path / 'study.db'}"
    name = study or search_path.stem
    check_options(config_path, space, fixed, search_path)
    held = check_root_study(root_path, storage, name)
    distributions = {option: distribution(spec) for option, spec in space.items()}
    optuna_study = open_study(storage, name, seed, median_pruner(pruner, search_path), distributions)
    if held is None:
        claim_root(root_path, storage, optuna_study)
    check_space_fits(optuna_study, distributions, search_path)
    common = ["--config", str(config_path), "--search", str(search_path), "--trials", str(trials)]
    common += ["--root", str(root_path), "--storage", storage, "--study", name]
    common += ["--timeout", str(timeout)] if timeout is not None else []
    others = [
        subprocess.Popen([sys.executable, "-m", "makemore", "search", *common, "--seed", str(seed), "--workers", "0"])
        for _ in range(1, workers)
    ]
    run_trials(optuna_study, config_path, distributions, fixed, root_path, trials, timeout, wait=workers > 0)
    if workers == 0:
        return
    if any(worker.wait() for worker in others):
        print("makemore search: a worker process failed (its error is above)", file=sys.stderr)
    text = report(optuna_study, config_path, fixed, root_path, storage)
    (root_path / "search.md").write_text(text + "\n")
    print(text)
