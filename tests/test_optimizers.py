"""Optimizer recipes as configuration: parameter groups, each with its own torch optimizer, from YAML alone."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import cli_error, small_run_args

from makemore.api import scalars
from makemore.checkpoint import read_checkpoint
from makemore.diagnostics import Diagnostics
from makemore.errors import CheckpointError
from makemore.models import MLP
from makemore.optimizers import ParameterGroups

# A tiny Transformer: its blocks' matrices for Muon, the rest for AdamW (configs/shakespeare/gpt_cpu_muon.yaml's
# recipe at the tests' size).
TINY_TRANSFORMER = {
    "class_path": "makemore.models.Transformer",
    "init_args": {"n_layer": 1, "n_head": 2, "n_embd": 16},
}
MATRICES = {
    "name": "matrices",
    "names": ["blocks.*"],
    "ndim": 2,
    "lr_scale": 10.0,
    "optimizer": {"class_path": "torch.optim.Muon", "init_args": {"momentum": 0.95, "weight_decay": 0.0}},
}
REST = {"name": "rest", "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"betas": [0.8, 0.99]}}}


def recipe_config(tmp_path: Path, groups: list[dict], net: dict = TINY_TRANSFORMER, **model) -> str:
    """A config file of a fit with these groups (model.optimizer a ParameterGroups recipe), its path."""
    optimizer = {"class_path": "makemore.optimizers.ParameterGroups", "init_args": {"groups": groups}}
    config = {"model": {"net": net, "learning_rate": 0.01, "optimizer": optimizer, **model}, "data": {"block_size": 8}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def fit(run_cli, words_path: Path, root: Path, config: str, max_steps: int, *more: str):
    return run_cli("fit", "--config", config, *small_run_args(words_path, root, max_steps=max_steps), *more)


def test_a_recipe_from_yaml_is_one_optimizer_whose_groups_are_its_optimizers(words_path, tmp_path, run_cli):
    cli = fit(run_cli, words_path, tmp_path, recipe_config(tmp_path, [MATRICES, REST]), 1)
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, ParameterGroups)
    muon, adamw = optimizer.optimizers
    assert (type(muon), type(adamw)) == (torch.optim.Muon, torch.optim.AdamW)
    # the very dicts each optimizer reads: a schedule or the LR finder that sets one sets that optimizer's rate
    assert [id(g) for g in optimizer.param_groups] == [id(g) for g in muon.param_groups + adamw.param_groups]
    assert muon.state is optimizer.state and adamw.state is optimizer.state
    named = dict(cli.model.net.named_parameters())
    matrices = {name for name, p in named.items() if name.startswith("blocks.") and p.dim() == 2}
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert in_muon == {id(named[name]) for name in matrices}
    assert in_adamw == {id(p) for name, p in named.items() if name not in matrices}  # each parameter once
    assert "embedding.weight" not in matrices and "head.weight" not in matrices  # 2-D, but AdamW's


def test_a_schedule_moves_every_groups_rate_and_lr_scale_multiplies_it(words_path, tmp_path, run_cli):
    schedule = {
        "class_path": "torch.optim.lr_scheduler.LinearLR",
        "init_args": {"start_factor": 1.0, "end_factor": 0.5, "total_iters": 20},
    }
    config = recipe_config(tmp_path, [MATRICES, REST], lr_scheduler=schedule)
    cli = fit(run_cli, words_path, tmp_path, config, 20)
    rates = [group["lr"] for group in cli.trainer.optimizers[0].param_groups]
    assert rates == pytest.approx([0.005, 0.005])  # model.learning_rate 0.01, halved by the end, in both groups
    assert [group["lr_scale"] for group in cli.trainer.optimizers[0].param_groups] == [10.0, 1.0]


def test_a_learning_rate_monitor_logs_each_groups_own_rate(words_path, tmp_path, run_cli):
    """Lightning's LearningRateMonitor logs the rate each group steps at: lr_scale x the shared rate (makemore's lr)."""
    config = recipe_config(tmp_path, [MATRICES, REST])
    cli = fit(run_cli, words_path, tmp_path, config, 20, "--trainer.callbacks+=LearningRateMonitor")
    shared = scalars(cli.trainer.log_dir, "lr")
    assert [step for step, _ in shared] == [10, 20]
    assert scalars(cli.trainer.log_dir, "lr-ParameterGroups/pg1") == [(s, pytest.approx(10 * r)) for s, r in shared]
    assert scalars(cli.trainer.log_dir, "lr-ParameterGroups/pg2") == shared
    assert [group["lr"] for group in cli.trainer.optimizers[0].param_groups] == [0.01, 0.01]  # the shared rate again


def test_a_groups_rate_is_lr_scale_times_model_learning_rate(words_path, tmp_path, run_cli):
    """One group of SGD with lr_scale 2 trains exactly as SGD at twice model.learning_rate."""
    sgd = {"name": "all", "lr_scale": 2.0, "optimizer": {"class_path": "torch.optim.SGD", "init_args": {}}}
    mlp = {"class_path": "makemore.models.MLP", "init_args": {}}
    recipe = fit(run_cli, words_path, tmp_path / "a", recipe_config(tmp_path, [sgd], net=mlp, hand_backward=False), 30)
    plain = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path / "b", max_steps=30),
        *("--data.block_size", "8", "--model.learning_rate", "0.02", "--model.hand_backward", "false"),
    )
    for a, b in zip(recipe.model.parameters(), plain.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_learning_rate_finder_moves_every_group_keeping_their_ratios(words_path, tmp_path, run_cli):
    cli = fit(
        run_cli,
        words_path,
        tmp_path,
        recipe_config(tmp_path, [MATRICES, REST]),
        40,
        "--trainer.callbacks+=makemore.lr_finder.FindLearningRate",
        "--trainer.callbacks.num_training_steps",
        "30",
    )
    assert cli.model.learning_rate != 0.01  # the suggestion replaced the configured rate
    groups = cli.trainer.optimizers[0].param_groups
    assert [group["lr"] for group in groups] == [cli.model.learning_rate] * 2
    assert [group["lr_scale"] for group in groups] == [10.0, 1.0]


def test_a_resumed_recipe_run_continues_bit_exactly(words_path, tmp_path, run_cli):
    schedule = {"class_path": "makemore.schedules.WarmupCosineLR", "init_args": {"warmup_steps": 5, "T_max": 60}}
    config = recipe_config(tmp_path, [MATRICES, REST], lr_scheduler=schedule)
    full = fit(run_cli, words_path, tmp_path / "full", config, 60)
    first = fit(run_cli, words_path, tmp_path / "parts", config, 30)
    last = Path(first.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    resumed = fit(run_cli, words_path, tmp_path / "parts", config, 60, "--ckpt_path", str(last))
    assert resumed.trainer.global_step == 60
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    full_state, resumed_state = full.trainer.optimizers[0].state_dict(), resumed.trainer.optimizers[0].state_dict()
    assert full_state["param_groups"] == resumed_state["param_groups"]
    for index, state in full_state["state"].items():  # Muon's momentum, AdamW's moments and step
        for key, value in state.items():
            assert torch.equal(value, resumed_state["state"][index][key]), (index, key)


def test_a_recipe_fit_lowers_the_loss_and_its_checkpoint_loads(words_path, tmp_path, run_cli, capsys):
    # "head.weight" reads like a dotted name to import: the checkpoint's import guard knows it is a pattern
    head = {**REST, "name": "head", "names": ["head.weight"]}
    rest = {**REST, "name": "rest"}
    cli = fit(run_cli, words_path, tmp_path, recipe_config(tmp_path, [MATRICES, head, rest]), 150)
    uniform = math.log(len(cli.datamodule.vocab))
    assert cli.trainer.callback_metrics["val_loss"] < uniform - 0.4
    best = cli.trainer.checkpoint_callback.best_model_path
    capsys.readouterr()
    run_cli("sample", "--ckpt_path", best, "--num_samples", "3", "--seed", "1")
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_a_class_inside_a_recipe_is_checked_by_the_import_guard(words_path, tmp_path, run_cli):
    cli = fit(run_cli, words_path, tmp_path, recipe_config(tmp_path, [MATRICES, REST]), 1)
    checkpoint = torch.load(Path(cli.trainer.log_dir, "checkpoints", "last.ckpt"), weights_only=True)
    groups = checkpoint["hyper_parameters"]["optimizer"]["init_args"]["groups"]
    groups[1]["optimizer"]["class_path"] = "shady.Optimizer"
    tampered = tmp_path / "tampered.ckpt"
    torch.save(checkpoint, tampered)
    with pytest.raises(CheckpointError, match="it names shady.Optimizer to import"):
        read_checkpoint(str(tampered))
    cli_error(["sample", "--ckpt_path", str(tampered)], r".*tampered.ckpt: it names shady.Optimizer to import")


@pytest.mark.parametrize(
    "groups, message",
    [
        (
            [MATRICES, {**REST, "names": ["*"]}],
            r"model.optimizer: the parameter blocks.0.qkv.weight is in the groups 'matrices' and 'rest'; each"
            " parameter belongs to exactly one group",
        ),
        (
            [MATRICES],
            r"model.optimizer: the parameter embedding.weight \(2-D\) is in none of the groups \('matrices'\)",
        ),
        (
            [{**MATRICES, "names": ["*"], "ndim": None}],
            r"model.optimizer: the group 'matrices' \(torch.optim.Muon\): Muon only supports 2D parameters",
        ),
        (
            [{**MATRICES, "names": ["block.*"]}, REST],
            r"model.optimizer: the group 'matrices' selects no parameter of the network",
        ),
        (
            [MATRICES, {**REST, "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.1}}}],
            r"model.optimizer: the group 'rest' sets its optimizer's lr; set the group's lr_scale instead",
        ),
        (
            [MATRICES, {**REST, "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"betas": [0.9, 2]}}}],
            r"model.optimizer: the group 'rest' \(torch.optim.AdamW\): Invalid beta parameter at index 1: 2",
        ),
        ([MATRICES, REST, {**REST, "names": ["head.*"]}], r"model.optimizer: the group name 'rest' is used twice"),
    ],
    ids=["in-two", "in-none", "muon-on-1-d", "selects-none", "lr-in-group", "bad-beta", "name-twice"],
)
def test_a_recipe_that_cannot_train_is_one_line_before_any_work(groups, message, words_path, tmp_path):
    groups = [{key: value for key, value in group.items() if value is not None} for group in groups]
    config = recipe_config(tmp_path, groups)
    cli_error(["fit", "--config", config, *small_run_args(words_path, tmp_path)], message)
    assert not list(tmp_path.glob("lightning_logs/version_*")), "a failed start leaves no run folder"


def test_fit_help_explains_recipes(run_cli, capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", "--help")
    assert "makemore.optimizers.ParameterGroups" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        run_cli("fit", "--model.optimizer.help", "makemore.optimizers.ParameterGroups")
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    for phrase in [
        "fnmatch patterns over the network's parameter names",
        "the group's rate is lr_scale x model.learning_rate",
    ]:
        assert phrase in text


def test_diagnostics_measure_each_groups_own_rate():
    """Diagnostics' update-to-data ratio uses the rate a recipe's group trains at, lr_scale x its lr."""

    class Writer:
        scalars: dict = {}

        def add_scalar(self, tag, value, step):
            self.scalars[tag] = float(value)

    class Module:  # what Diagnostics.measure reads of a LightningModule
        device = torch.device("cpu")

    torch.manual_seed(0)
    module = Module()
    module.net = MLP(27, 3, n_embd=4, n_hidden=16)
    sgd = {"class_path": "torch.optim.SGD", "init_args": {}}
    groups = [
        {"name": "hidden", "names": ["hidden.*"], "lr_scale": 4.0, "optimizer": sgd},
        {"name": "rest", "optimizer": sgd},
    ]
    optimizer = ParameterGroups(module.net.named_parameters(), groups, lr=0.1)
    x, y = torch.randint(0, 27, (32, 3)), torch.randint(0, 27, (32,))
    writer = Writer()
    Diagnostics(histograms=False).measure(writer, module, x, y, 0, optimizer)
    _, loss = module.net(x, y)
    loss.backward()
    for name, rate in [("hidden.0.weight", 0.4), ("embedding.weight", 0.1)]:
        p = dict(module.net.named_parameters())[name]
        expected = math.log10(float((rate * p.grad).std() / p.detach().std()))
        assert writer.scalars[f"update_ratio/{name}"] == pytest.approx(expected, rel=1e-5)
