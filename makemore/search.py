"""`makemore search`: a hyperparameter search with Optuna over any option of the CLI, the space in YAML.

Each trial is a normal `fit` (its own run folder under --root, with TensorBoard logs) with the trial's
options on top of the base config. TPE proposes the options; a median pruner stops a trial whose val_loss
at a validation is worse than the median of the earlier trials' at the same step (`PruneOnValidation`,
a Lightning callback). The study lives in a database (SQLite by default, under --root): several workers
(`--workers`, each a process) share it, and a search that was killed resumes where it stopped when run
again with the same options; only the trials in flight are lost (marked failed after their heartbeat
stops). Selection is on val_loss only; at the end the best trial's checkpoint is tested once, and the
trials table, the best settings as a ready config, and Optuna's history and importance plots are written.

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
import io
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import lightning as L
import yaml

from makemore.errors import ConfigError, MakemoreError

_TRIAL: Any = None  # the optuna trial this process is running, for PruneOnValidation


class PruneOnValidation(L.Callback):
    """Reports val_loss to the running Optuna trial at each validation and stops the fit when it is pruned.

    The last validation (at trainer.max_steps) is reported but never prunes: the trial has trained to the end.

    Does nothing outside `makemore search`.
    """

    pruned = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _TRIAL is None or trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        _TRIAL.report(float(trainer.callback_metrics["val_loss"]), trainer.global_step)
        if trainer.global_step >= trainer.max_steps > 0:  # trained to the end: nothing left to save, it completes
            return
        if _TRIAL.should_prune():
            self.pruned = True
            trainer.should_stop = True


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
    pruner = content.get("pruner") or {}
    if not isinstance(pruner, dict):
        raise ConfigError(f"{path}: pruner must be a mapping of optuna.pruners.MedianPruner's arguments")
    fixed = content.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{path}: fixed must be a mapping of CLI options to the value every trial sets")
    both = set(fixed) & set(content["space"])
    if both:
        raise ConfigError(f"{path}: {sorted(both)} both searched and fixed; give each option once")
    return content["space"], pruner, fixed


def suggest(trial: Any, option: str, spec: dict) -> Any:
    if "choices" in spec:
        return trial.suggest_categorical(option, spec["choices"])
    if isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
        return trial.suggest_int(option, spec["low"], spec["high"], step=spec.get("step", 1))
    if isinstance(spec["low"], int) and isinstance(spec["high"], int):
        return trial.suggest_int(option, spec["low"], spec["high"], log=True)
    return trial.suggest_float(option, spec["low"], spec["high"], log=bool(spec.get("log")), step=spec.get("step"))


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


def open_study(storage: str, name: str, seed: int, pruner: dict) -> Any:
    import optuna
    import sqlalchemy.exc

    try:
        with warnings.catch_warnings():  # Optuna marks the heartbeat experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            store = optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=120)
        return optuna.create_study(
            storage=store,
            study_name=name,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(**pruner),
            load_if_exists=True,
        )
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(f"{storage}: not a usable Optuna study database ({str(err).splitlines()[0]})") from None


def run_trials(
    study: Any,
    config: Path,
    space: dict[str, dict],
    fixed: dict[str, Any],
    root: Path,
    trials: int,
    timeout: Optional[float] = None,
) -> None:
    """This process's share of the trials, until the study holds `trials` finished (complete or pruned) ones,
    starting none after `timeout` seconds."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from makemore.lightning_cli import run

    def objective(trial: Any) -> float:
        global _TRIAL
        values = {option: suggest(trial, option, spec) for option, spec in space.items()}
        folder = root / f"trial_{trial.number}"
        args = ["fit", "--config", str(config), *flags({**fixed, **values}), "--trainer.default_root_dir", str(folder)]
        args += ["--trainer.callbacks+=makemore.search.PruneOnValidation", "--trainer.enable_progress_bar", "false"]
        print(f"makemore search: trial {trial.number}: {' '.join(flags(values))}", file=sys.stderr, flush=True)
        _TRIAL = trial
        try:
            cli = run(args)
        finally:
            _TRIAL = None
        trainer = cli.trainer
        trial.set_user_attr("run", str(Path(trainer.log_dir)))
        trial.set_user_attr("steps", trainer.global_step)
        if any(isinstance(c, PruneOnValidation) and c.pruned for c in trainer.callbacks):
            raise optuna.TrialPruned()
        best = trainer.checkpoint_callback.best_model_score
        if best is None or not math.isfinite(float(best)):
            raise ConfigError(f"trial {trial.number} has no validation loss (did it validate?)")
        trial.set_user_attr("best_checkpoint", trainer.checkpoint_callback.best_model_path)
        return float(best)

    failures: list[str] = []

    def stop_after_failures(study: Any, trial: Any) -> None:
        """A trial that fails (diverged, bad settings) is recorded and the search goes on; three in a row stop it."""
        failures[:] = [*failures, trial.number] if trial.state == TrialState.FAIL else []
        if len(failures) >= 3:
            study.stop()

    states = (TrialState.COMPLETE, TrialState.PRUNED)
    if len(study.get_trials(deepcopy=False, states=states)) < trials:
        callbacks = [MaxTrialsCallback(trials, states=states), stop_after_failures]
        study.optimize(objective, callbacks=callbacks, catch=(MakemoreError,), timeout=timeout)
    if len(failures) >= 3:
        raise ConfigError(
            f"trials {', '.join(map(str, failures))} failed one after another (their errors are above); the search"
            " stopped. Check the base config and the space"
        )


def report(study: Any, config: Path, fixed: dict[str, Any], root: Path, storage: str) -> str:
    """The trials table, best.yaml, the plots, and the best trial's test loss (evaluated once); search.md's text."""
    from optuna.trial import TrialState

    from makemore.lightning_cli import run, shown

    finished = study.get_trials(deepcopy=False)
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    options = list(finished[0].params) if finished else []
    lines = [f"# Search: study `{study.study_name}` ({shown_storage(storage)})", ""]
    lines.append("| trial | state | val_loss | steps | " + " | ".join(f"`{o}`" for o in options) + " |")
    lines.append("|---" * (4 + len(options)) + "|")
    for t in finished:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        cells = [cell(t.params.get(o, "-")) for o in options]
        lines.append(
            f"| {t.number} | {t.state.name.lower()} | {value} | {t.user_attrs.get('steps', '-')} | "
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
    if not complete:
        return "\n".join(lines + ["", "No trial completed: no best settings yet."])
    best = study.best_trial
    best_config = root / "best.yaml"
    for option, value in best.params.items():
        set_option(base, option, value)
    header = (
        f"# makemore search: the best of {len(complete)} complete trials of study {study.study_name}, val_loss"
        f" {best.value:.4f}\n# (the base config {config} with the search's fixed and best options)\n"
    )
    best_config.write_text(header + yaml.safe_dump(base, sort_keys=False))
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
    lines += [
        "",
        f"Best: trial {best.number}, val_loss {best.value:.4f}, test_loss {study.user_attrs['test_loss']:.4f} (its"
        f" checkpoint tested once); settings: `{shown(best_config)}` (`python -m makemore fit --config"
        f" {shown(best_config)}`).",
    ]
    plots(study, root, len(complete))
    for name, title in (("history.png", "optimisation history"), ("importances.png", "parameter importances")):
        if (root / name).exists():
            lines += ["", f"![{title}]({name})"]
    return "\n".join(lines)


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
        trials: finished trials (complete or pruned) the study should hold; running again with more continues it.
        workers: processes running trials at once, sharing the study (0: only run trials, as each extra worker
            process does; no report).
        root: where the trials' run folders, the database and the results go.
        storage: the study's database URL (default: sqlite:///ROOT/study.db).
        study: the study's name (default: the search file's name).
        seed: seed of the TPE sampler.
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
    root_path.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{root_path / 'study.db'}"
    name = study or search_path.stem
    check_options(config_path, space, fixed, search_path)
    optuna_study = open_study(storage, name, seed, pruner)
    common = ["--config", str(config_path), "--search", str(search_path), "--trials", str(trials)]
    common += ["--root", str(root_path), "--storage", storage, "--study", name]
    common += ["--timeout", str(timeout)] if timeout is not None else []
    others = [
        subprocess.Popen(
            [sys.executable, "-m", "makemore", "search", *common, "--seed", str(seed + i), "--workers", "0"]
        )
        for i in range(1, workers)
    ]
    run_trials(optuna_study, config_path, space, fixed, root_path, trials, timeout)
    if workers == 0:
        return
    if any(worker.wait() for worker in others):
        print("makemore search: a worker process failed; its trials are marked failed", file=sys.stderr)
    text = report(optuna_study, config_path, fixed, root_path, storage)
    (root_path / "search.md").write_text(text + "\n")
    print(text)
