"""`makemore search`: an Optuna study over CLI options, shared by worker processes, resumable, with clear errors."""

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import cli_error, small_run_args

from makemore import search as search_module
from makemore.cli import main
from makemore.formats import default_path
from makemore.formats.text import read_text
from makemore.lightning_cli import run
from makemore.lightning_features import batch_readers


def base_config(words: Path, tmp_path: Path) -> Path:
    """A small fit as a config file: 60 SGD steps on the tiny word list, validation every 20."""
    config: dict = {"seed_everything": 0, "trainer": {}, "data": {}}
    args = small_run_args(words, tmp_path, max_steps=60, data__val_every_n_steps="20")
    for option, value in zip(args[::2], args[1::2]):
        section, _, key = option.removeprefix("--").partition(".")
        if section in ("trainer", "data"):
            config[section][key] = yaml.safe_load(value)
    config["trainer"].pop("default_root_dir")
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def space_file(tmp_path: Path, space: dict, pruner: dict | None = None, fixed: dict | None = None) -> Path:
    path = tmp_path / "space.yaml"
    extra = {**({"pruner": pruner} if pruner else {}), **({"fixed": fixed} if fixed else {})}
    path.write_text(yaml.safe_dump({"space": space, **extra}))
    return path


SPACE = {
    "model.learning_rate": {"low": 0.05, "high": 0.5, "log": True},
    "model.net.init_args.n_hidden": {"choices": [16, 32]},
}


def load(root: Path, name: str = "space") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / 'study.db'}")


def ran(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that ran or run, not those drawn and not run (a lost race for the last place)."""
    return [t for t in study.trials if "not_run" not in t.user_attrs]


def settings(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials]


def test_search_runs_trials_in_workers_and_resumes(words_path, tmp_path, capsys):
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    space = space_file(tmp_path, SPACE, fixed={"trainer.max_steps": 40})  # every trial shorter than the base's 60
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(root)]
    main([*args, "--trials", "3", "--workers", "2"])
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{root / 'study.db'}")
    finished = ran(study)  # the two processes ran 3 trials in all, with 3 settings
    assert len(finished) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
    assert len(set(settings(finished))) == 3
    for trial in finished:  # each trial is a normal run folder, with its TensorBoard logs
        assert list(Path(trial.user_attrs["run"]).glob("events.out.tfevents.*"))
        assert set(trial.params) == set(SPACE) and trial.user_attrs["steps"] == 40
    text = (root / "search.md").read_text()
    assert text.count("| complete |") == len(finished) and "test_loss" in text
    best = yaml.safe_load((root / "best.yaml").read_text())
    assert best["model"]["learning_rate"] == pytest.approx(study.best_params["model.learning_rate"])
    assert best["model"]["net"]["init_args"]["n_hidden"] == study.best_params["model.net.init_args.n_hidden"]
    assert best["trainer"]["max_steps"] == 40  # the fixed options too: best.yaml reproduces the trial
    main(["fit", "--config", str(root / "best.yaml"), "--trainer.default_root_dir", str(tmp_path / "again")])
    tested = study.user_attrs["tested"]
    assert tested == study.best_trial.number and (root / "history.png").exists()

    # run again with as many: no trial runs and the winner is not tested again
    tests = list(Path(study.best_trial.user_attrs["run"]).glob("events.out.tfevents.*"))
    main([*args, "--trials", str(len(finished))])
    assert list(Path(study.best_trial.user_attrs["run"]).glob("events.out.tfevents.*")) == tests
    assert len(optuna.load_study(study_name="space", storage=f"sqlite:///{root / 'study.db'}").trials) == len(
        study.trials
    )

    # run again asking for more: the study continues, the earlier trials stay
    main([*args, "--trials", str(len(finished) + 2)])
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{root / 'study.db'}")
    again = ran(study)
    assert len(again) == len(finished) + 2 and len(set(settings(again))) == len(again)
    assert [t.params for t in again[: len(finished)]] == [t.params for t in finished]


class FakeTrial:
    """An Optuna trial's report and should_prune, recorded; should_prune answers `prune`."""

    def __init__(self, prune: bool) -> None:
        self.prune, self.reported, self.asked = prune, [], []

    def report(self, value: float, step: int) -> None:
        self.reported.append(step)

    def should_prune(self) -> bool:
        self.asked.append(self.reported[-1])
        return self.prune


def test_a_pruned_trial_stops_at_the_validation(words_path, tmp_path):
    trial = FakeTrial(prune=True)
    pruning = search_module.PruneAtSGDStep(trial)
    trainer = run(["fit", *small_run_args(words_path, tmp_path, max_steps=200)], callbacks=[pruning]).trainer
    assert trainer.global_step == 50 and pruning.pruned  # stopped at the first validation (data.val_every_n_steps 50)
    assert trial.reported == [50]
    assert (Path(trainer.log_dir) / "checkpoints" / "last.ckpt").is_file()  # the fit ended as a fit does
    assert batch_readers(trainer, trainer.lightning_module) == []  # still many SGD steps a Lightning batch


def test_each_validation_is_reported_at_its_sgd_step_and_the_last_never_prunes(words_path, tmp_path):
    trial = FakeTrial(prune=False)
    pruning = search_module.PruneAtSGDStep(trial)
    args = [*small_run_args(words_path, tmp_path, max_steps=100), "--data.val_every_n_steps", "25"]
    run(["fit", *args], callbacks=[pruning])
    assert trial.reported == [25, 50, 75, 100]  # each validation at its own SGD step
    assert trial.asked == [25, 50, 75] and not pruning.pruned  # at max_steps the trial has trained to the end


def test_the_library_callback_reports_epochs_and_crashes_the_fit(words_path, tmp_path):
    """Why PruneAtSGDStep is not optuna-integration's callback (should this fail, see whether it could be now)."""
    from optuna_integration import PyTorchLightningPruningCallback

    args = [*small_run_args(words_path, tmp_path, max_steps=100), "--data.val_every_n_steps", "25"]
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    run(["fit", *args], callbacks=[PyTorchLightningPruningCallback(study.ask(), monitor="val_loss")])
    assert list(study.trials[0].intermediate_values) == [0, 1, 2, 3]  # SGD steps 25 to 100, by epoch

    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # prunes at once
    with pytest.raises(optuna.TrialPruned):  # out of the fit, with no trainer to read the run's steps from
        run(["fit", *args], callbacks=[PyTorchLightningPruningCallback(study.ask(), monitor="val_loss")])
    pruned_run = tmp_path / "lightning_logs" / "version_1"
    assert pruned_run.is_dir() and not list(pruned_run.glob("checkpoints/*.ckpt"))  # no checkpoint saved


def test_pruned_trials_are_recorded_with_their_steps(words_path, tmp_path, monkeypatch):
    config, space, root = base_config(words_path, tmp_path), space_file(tmp_path, SPACE), tmp_path / "search"
    monkeypatch.setattr(search_module, "median_pruner", lambda *_: optuna.pruners.ThresholdPruner(upper=0.0))
    main(["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", "2"])
    trials = ran(load(root))
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2  # each at its first validation
    assert [t.user_attrs["steps"] for t in trials] == [20, 20]
    assert [list(t.intermediate_values) for t in trials] == [[20], [20]]  # reported at the SGD step
    assert (
        "2 trials: 0 complete, 2 pruned (stopped early, 80 of their 120 SGD steps not trained)"
        in (root / "search.md").read_text()
    )


@pytest.mark.parametrize(
    "space, pattern",
    [
        ({"model.learning_speed": {"low": 0.01, "high": 0.1}}, ".*model.learning_speed"),
        ({"model.learning_rate": {"low": 0.1, "high": 0.01}}, ".*model.learning_rate: an empty or inverted range"),
        ({"data.block_size": {"choices": []}}, ".*data.block_size: choices must be a non-empty list"),
        ({"model.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, ".*a log range needs low above 0"),
        ({"model.net.init_args.n_hidden": {"low": 16, "high": 64, "step": 0}}, ".*space.yaml: .*n_hidden: .*step"),
    ],
    ids=["unknown option", "inverted", "empty choices", "log from 0", "zero step"],
)
def test_bad_search_spaces_are_one_line(words_path, tmp_path, space, pattern):
    config = base_config(words_path, tmp_path)
    args = ["search", "--config", str(config), "--search", str(space_file(tmp_path, space))]
    cli_error([*args, "--root", str(tmp_path / "search")], pattern)
    assert not list((tmp_path / "search").glob("trial_*"))  # nothing ran


@pytest.mark.parametrize(
    "fixed, pattern",
    [
        ({"trainer.max_stepz": 10}, ".*trainer.max_stepz"),
        ({"model.learning_rate": 0.1}, r".*\['model.learning_rate'\] both searched and fixed"),
    ],
    ids=["unknown option", "searched and fixed"],
)
def test_bad_fixed_options_are_one_line(words_path, tmp_path, fixed, pattern):
    config = base_config(words_path, tmp_path)
    args = ["search", "--config", str(config), "--search", str(space_file(tmp_path, SPACE, fixed=fixed))]
    cli_error([*args, "--root", str(tmp_path / "search")], pattern)
    assert not list((tmp_path / "search").glob("trial_*"))  # nothing ran


def test_settings_the_fit_refuses_are_one_line_before_the_study(words_path, tmp_path):
    """Options that parse but that the fit's classes refuse (fractions that leave no test split) name the search file
    before any database is opened or trial run, as a misspelt option does."""
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    space = space_file(tmp_path, {"data.val_fraction": {"choices": [0.5, 0.6]}}, fixed={"data.train_fraction": 0.5})
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(root)]
    cli_error(args, r".*space.yaml: data.train_fraction \(0.5\) and data.val_fraction \(0.5\) must be positive")
    assert not (root / "study.db").exists() and not list(root.glob("trial_*"))


def test_a_timeout_stops_starting_trials(words_path, tmp_path):
    config, space, root = base_config(words_path, tmp_path), space_file(tmp_path, SPACE), tmp_path / "search"
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", "50"]
    cli_error([*args, "--timeout", "0"], ".*--timeout must be above 0 seconds")
    main([*args, "--timeout", "0.5"])  # one trial alone takes longer than that
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{root / 'study.db'}")
    assert 1 <= len(study.trials) < 50 and (root / "search.md").exists()


def test_a_database_that_is_not_a_study_is_one_line(words_path, tmp_path):
    root = tmp_path / "search"
    root.mkdir()
    (root / "study.db").write_bytes(b"not a database at all" * 100)
    config, space = base_config(words_path, tmp_path), space_file(tmp_path, SPACE)
    cli_error(
        ["search", "--config", str(config), "--search", str(space), "--root", str(root)],
        ".*study.db: not a usable Optuna study database",
    )
    assert (root / "study.db").read_bytes().startswith(b"not a database")  # left as it was


def test_trials_that_keep_failing_stop_the_search(words_path, tmp_path, capsys):
    config = base_config(words_path, tmp_path)
    space = space_file(tmp_path, {"model.learning_rate": {"low": 1.0e6, "high": 1.0e7, "log": True}})  # diverges
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(tmp_path / "search")]
    cli_error([*args, "--trials", "10"], "trials 0, 1, 2 failed one after another")
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if " failed" in line]  # each trial's error in one line, nothing more
    assert [line.split(": training diverged at SGD step")[0] for line in failed] == [
        f"makemore search: trial {number} failed" for number in range(3)
    ]
    assert "Traceback" not in err


def test_a_failed_trial_is_one_line_in_the_report(words_path, tmp_path, capsys):
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    space = space_file(tmp_path, {"model.learning_rate": {"choices": [1.0e7, 0.1]}})  # trial 0 draws 1e7: diverges
    main(["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", "1"])
    assert "Traceback" not in capsys.readouterr().err
    text = (root / "search.md").read_text()
    failed = re.findall(r"^- trial (\d+) failed: training diverged at SGD step \d+: .*learning_rate", text, re.M)
    assert failed[0] == "0" and len(failed) == text.count("| fail |")  # each failed trial's error, one line
    assert f"trials: 1 complete, 0 pruned, {len(failed)} failed" in text


def test_a_root_that_is_a_file_or_read_only_is_one_line(words_path, tmp_path, monkeypatch):
    config, space = base_config(words_path, tmp_path), space_file(tmp_path, SPACE)
    args = ["search", "--config", str(config), "--search", str(space), "--trials", "1"]
    results = tmp_path / "results.txt"
    results.write_text("mine\n")
    cli_error([*args, "--root", str(results)], re.escape(f"--root {results}: a file, not a folder"))
    cli_error([*args, "--root", str(results / "search")], re.escape(f"--root {results / 'search'}: cannot create"))
    assert results.read_text() == "mine\n"
    locked = tmp_path / "locked"
    locked.mkdir()
    access = search_module.os.access  # as a user without write permission there (the tests run as root)
    monkeypatch.setattr(
        search_module.os, "access", lambda path, mode, **kw: Path(path) != locked and access(path, mode, **kw)
    )
    cli_error([*args, "--root", str(locked)], re.escape(f"--root {locked}: read-only"))
    assert not list(locked.iterdir())


def test_a_root_holds_one_study(words_path, tmp_path):
    """Another study in a search's root (another search file, --study or --storage) is refused, before it opens:
    its trial_N folders, best.yaml and search.md would be the first study's."""
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    space = space_file(tmp_path, {"model.learning_rate": {"choices": [0.1, 0.2]}})  # study "space"
    args = ["search", "--config", str(config), "--root", str(root), "--trials", "1"]
    main([*args, "--search", str(space)])
    kept = {path: path.read_bytes() for path in (root / "best.yaml", root / "search.md", root / "study.db")}
    other = tmp_path / "other.yaml"
    other.write_text(space.read_text())  # study "other"
    holds = re.escape(f"--root {root} holds study 'space' of sqlite:///{root / 'study.db'}: continue it with")
    default = " --study space and the default --storage, or give study"
    cli_error([*args, "--search", str(other)], f"{holds}{default} 'other' another --root")
    cli_error([*args, "--search", str(space), "--study", "mine"], f"{holds}{default} 'mine' another --root")
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    cli_error([*args, "--search", str(space), "--storage", elsewhere], f"{holds}{default} 'space' another --root")
    assert {path: path.read_bytes() for path in kept} == kept and not (tmp_path / "elsewhere.db").exists()
    main([*args, "--search", str(other), "--study", "space"])  # the same study, continued: allowed
    assert optuna.get_all_study_names(f"sqlite:///{root / 'study.db'}") == ["space"]


def test_the_challenge_search_space_fits_the_challenge_config():
    repo = Path(__file__).resolve().parents[1]
    path = repo / "configs" / "search" / "challenge.yaml"
    space, pruner, fixed = search_module.read_space(path)
    search_module.check_options(repo / "configs" / "challenge.yaml", space, fixed, path)  # every option parses
    assert pruner["n_startup_trials"] >= 1
    assert fixed["model.lr_scheduler.init_args.T_max"] == fixed["trainer.max_steps"]  # the cosine ends with the trial
    assert pruner["n_warmup_steps"] < fixed["trainer.max_steps"]  # the pruner gets to act


def test_a_continued_search_draws_new_settings_as_one_search_would(words_path, tmp_path):
    """The same command again with a larger --trials: new settings, the very ones one longer run draws."""
    config, space = base_config(words_path, tmp_path), space_file(tmp_path, SPACE)

    def search(root: Path, trials: int) -> None:
        main(["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", str(trials)])

    search(tmp_path / "continued", 1)
    search(tmp_path / "continued", 2)
    search(tmp_path / "at_once", 2)
    continued = load(tmp_path / "continued").trials
    assert [t.state for t in continued] == [optuna.trial.TrialState.COMPLETE] * 2
    assert len(set(settings(continued))) == 2  # not trial 0's settings again (the sampler's seed of each run)
    assert settings(continued) == settings(load(tmp_path / "at_once").trials)


def test_no_two_trials_share_settings_until_the_space_has_no_others(words_path, tmp_path):
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    space = space_file(tmp_path, {"model.net.init_args.n_hidden": {"choices": [16, 32]}})  # two settings
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(root)]
    main([*args, "--trials", "1"])
    main([*args, "--trials", "3"])  # the second run takes the other setting, the third trial repeats one
    trials = ran(load(root))
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert {t.params["model.net.init_args.n_hidden"] for t in trials[:2]} == {16, 32}

    # other choices for the same study: Optuna cannot change them in a study, so the search file is the error
    space = space_file(tmp_path, {"model.net.init_args.n_hidden": {"choices": [16, 64]}})
    cli_error([*args, "--trials", "4"], r".*space.yaml: model.net.init_args.n_hidden: not the distribution study")
    assert len(load(root).trials) == 3


def test_a_trial_that_lost_the_race_for_the_last_place_is_not_run(tmp_path):
    """Two processes can both start a trial for the study's last place (MaxTrialsCallback counts when a trial ends): the
    trial the database numbered later yields, unrun, and is marked so that the report leaves it out."""
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=1.0))  # one of 2 trials finished: one place left
    first, second = study.ask(), study.ask()  # two processes take it at once
    space = {"model.learning_rate": optuna.distributions.FloatDistribution(0.05, 0.5, log=True)}
    options = {
        "config": tmp_path / "unread.yaml",
        "space": space,
        "fixed": {},
        "root": tmp_path,
        "trials": 2,
        "seed": 0,
    }
    with pytest.raises(search_module.NotRun):
        search_module.fit_trial(second, **options)
    assert study.trials[second.number].user_attrs["not_run"] and not study.trials[second.number].params
    assert first.number < second.number and not list(tmp_path.iterdir())  # nothing ran


def start_search(args: list[str], root: Path, log: Path) -> subprocess.Popen:
    """`python -m makemore search ARGS` in a process of its own, returned once its trial 0's fit has started."""
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "makemore", *args], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not (root / "trial_0" / "lightning_logs").exists():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)
    return process


@pytest.mark.parametrize(
    "searched",
    [SPACE, {"model.net.init_args.n_hidden": {"choices": [16, 32, 48]}}],
    ids=["TPE", "as many settings as trials: BruteForceSampler"],
)
def test_two_searches_at_once_run_the_trials_asked_for_with_distinct_settings(words_path, tmp_path, searched):
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    space = space_file(tmp_path, searched, fixed={"trainer.max_steps": 200})  # trials long enough to overlap
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", "3"]
    other = start_search(args, root, tmp_path / "other.log")
    try:
        main(args)  # the same command, while the other one runs its trials
    finally:
        assert other.wait(timeout=300) == 0, (tmp_path / "other.log").read_text()
    trials = ran(load(root))
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3  # 3 in all, none running
    assert len(set(settings(trials))) == 3
    assert "3 trials: 3 complete" in (root / "search.md").read_text()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retry_history, read by retried
def test_a_trial_whose_process_was_killed_is_failed_and_run_again(words_path, tmp_path, monkeypatch):
    config, space, root = base_config(words_path, tmp_path), space_file(tmp_path, SPACE), tmp_path / "search"
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", "2"]
    killed = start_search(args, root, tmp_path / "killed.log")
    killed.kill()  # kill -9 during trial 0's fit
    killed.wait()
    assert [t.state for t in load(root).trials] == [optuna.trial.TrialState.RUNNING]  # as the dead process left it

    monkeypatch.setattr(search_module, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(search_module, "GRACE_PERIOD", 2)  # found dead after 2 s without a heartbeat (not 30)
    main(args)  # the same command again
    study = load(root)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]
    again = [t for t in study.trials if search_module.retried(t) == 0]
    assert len(again) == 1 and again[0].params == study.trials[0].params  # run again with its settings
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and again[0] in complete and len(set(settings(complete))) == 2
    text = (root / "search.md").read_text()
    assert f"| 0 (its process died; run again as trial {again[0].number}) | fail |" in text


def test_a_database_of_something_else_is_refused_and_left_as_it_was(words_path, tmp_path):
    contacts = tmp_path / "contacts.db"
    with sqlite3.connect(contacts) as db:
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        db.execute("INSERT INTO contacts VALUES ('Ada', '555-0100')")
    db.close()
    before = contacts.read_bytes()
    config, space, root = base_config(words_path, tmp_path), space_file(tmp_path, SPACE), tmp_path / "search"
    args = ["search", "--config", str(config), "--search", str(space), "--root", str(root)]
    cli_error(
        [*args, "--storage", f"sqlite:///{contacts}"],
        r".*contacts.db: not an Optuna study database \(it holds the tables contacts\); nothing was written to it",
    )
    assert contacts.read_bytes() == before  # byte for byte: no Optuna tables added
    assert not list(root.glob("trial_*"))


@pytest.mark.parametrize(
    "pruner, pattern",
    [
        (
            {"n_startup_trial": 2},
            r".*space.yaml: pruner: unknown argument 'n_startup_trial' \(did you mean n_startup_trials\?\)",
        ),
        ({"n_warmup_steps": -1}, r".*space.yaml: pruner: Number of warmup steps cannot be negative"),
    ],
    ids=["misspelt", "negative"],
)
def test_a_bad_pruner_is_an_error_of_the_search_file(words_path, tmp_path, pruner, pattern):
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    space = space_file(tmp_path, SPACE, pruner=pruner)
    cli_error(["search", "--config", str(config), "--search", str(space), "--root", str(root)], pattern)
    assert not (root / "study.db").exists()  # named before any database is opened


def test_choices_that_are_lists_are_searched_and_written_as_lists(words_path, tmp_path):
    """A choice may be a list (AdamW's betas): searched as its JSON text (Optuna's choices are plain values), given
    to the fit as the list, and written to best.yaml as the list."""
    config, root = base_config(words_path, tmp_path), tmp_path / "search"
    betas = "model.optimizer.init_args.betas"
    space = space_file(
        tmp_path,
        {betas: {"choices": [[0.9, 0.99], [0.8, 0.9]]}},
        fixed={"model.optimizer": {"class_path": "torch.optim.AdamW"}},
    )
    main(["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", "2"])
    trials = ran(load(root))
    assert sorted(t.params[betas] for t in trials) == ["[0.8, 0.9]", "[0.9, 0.99]"]
    best = yaml.safe_load((root / "best.yaml").read_text())
    assert best["model"]["optimizer"]["init_args"]["betas"] in ([0.9, 0.99], [0.8, 0.9])
    hparams = [yaml.safe_load(next((root / f"trial_{t.number}").rglob("config.yaml")).read_text()) for t in trials]
    assert sorted(h["model"]["optimizer"]["init_args"]["betas"] for h in hparams) == [[0.8, 0.9], [0.9, 0.99]]


def test_a_search_on_a_text_without_a_test_split_reports_validation_only(tmp_path):
    """A text split as the lecture splits it (90/10) has no test share: the search's report says so instead of
    failing to test the winner."""
    text = tmp_path / "plays.txt"
    text.write_text(read_text(default_path("text"))[:3000], encoding="utf-8")
    config, root = base_config(text, tmp_path), tmp_path / "search"
    fixed = {"data.format": "text", "data.train_fraction": 0.9, "data.val_fraction": 0.1, "trainer.max_steps": 20}
    space = space_file(tmp_path, {"model.learning_rate": {"choices": [0.1, 0.2]}}, fixed=fixed)
    main(["search", "--config", str(config), "--search", str(space), "--root", str(root), "--trials", "1"])
    assert "no test split" in (root / "search.md").read_text()
    assert load(root).user_attrs["test_loss"] is None
