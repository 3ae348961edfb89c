"""Distillation (model.teacher): the teachers' soft targets, the objective, and a fit that uses them."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cli_error, small_run_args

from makemore.checkpoint import load_network
from makemore.data import CharDataModule
from makemore.distillation import objective, teacher_probabilities
from makemore.formats import default_path
from makemore.formats.text import read_text
from makemore.formats.words import build_examples
from makemore.models import Transformer, eval_mode
from makemore.steps import TrainBatches

TRANSFORMER = {
    "model.net": "makemore.models.Transformer",
    "model.net.n_layer": "1",
    "model.net.n_head": "2",
    "model.net.n_embd": "16",
    "model.optimizer": "torch.optim.AdamW",
    "model.learning_rate": "0.01",
    "data.block_size": "10",
}


def transformer_args(words: Path, root: Path, max_steps: int = 20, **overrides) -> list[str]:
    options = {**TRANSFORMER, **{key.replace("__", "."): value for key, value in overrides.items()}}
    return [*small_run_args(words, root, max_steps=max_steps), *(a for k, v in options.items() for a in (f"--{k}", v))]


def fit_teacher(run_cli, words: Path, root: Path, seed: int, **overrides) -> str:
    run_cli("fit", *transformer_args(words, root, seed_everything=str(seed), **overrides))
    return str(next(root.rglob("last.ckpt")))


def test_the_soft_targets_are_the_teachers_mean_prediction_of_each_training_character(words_path, tmp_path, run_cli):
    teachers = [fit_teacher(run_cli, words_path, tmp_path / f"t{seed}", seed) for seed in (0, 1)]
    data = CharDataModule(path=str(words_path), block_size=10)
    data.setup("fit")
    rows = teacher_probabilities(teachers, data, torch.device("cpu"))
    # character by character, as the lecture's build_dataset makes the examples: each from its word's prefix
    X, Y = build_examples(data.splits[0], data.vocabulary, 10)
    expected = torch.zeros(len(Y), len(data.vocabulary))
    for path in teachers:
        net, _ = load_network(path)
        with eval_mode(net):
            logits, _ = net(X)
        expected += F.softmax(logits[:, -1], dim=-1) / len(teachers)
    assert rows.shape == expected.shape
    torch.testing.assert_close(rows, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("text", [False, True])
def test_one_hot_soft_targets_give_the_cross_entropy_at_every_position(words_path, tmp_path, text):
    """With the true next characters as the teacher's rows, the distilled term is the network's own cross-entropy:
    each column of a window reads the row of the character it predicts, and the padding columns are left out."""
    if text:
        path = tmp_path / "plays.txt"
        path.write_text(read_text(default_path("text"))[:3000], encoding="utf-8")
        data = CharDataModule(path=str(path), format="text", block_size=16, train_fraction=0.8, val_fraction=0.2)
    else:
        data = CharDataModule(path=str(words_path), block_size=10, train_on="words")
    data.setup("fit")
    torch.manual_seed(0)
    net = Transformer(len(data.vocabulary), data.hparams.block_size, n_layer=1, n_head=2, n_embd=16)
    one_hot = F.one_hot(data.examples["train"].ids.long(), len(data.vocabulary)).float()
    batch = TrainBatches(data.train_pool(), batch_size=8, steps=3, epoch_steps=3, seed=0, rank=0).batch(0)
    X, Y, where = (t.flatten(0, 1) for t in batch)  # (steps x mini-batches per step, b, ...)
    for x, y, p in zip(X, Y, where):
        logits, loss = net(x, y)
        assert (x[:, 0] == 0).any() or text  # word windows start with padding: the mask matters
        torch.testing.assert_close(objective(logits, loss, x, p, one_hot, 1.0), loss)
        assert objective(logits, loss, x, p, torch.full_like(one_hot, 1 / one_hot.shape[1]), 0.0) == loss


def test_a_fit_distils_the_same_steps_and_batches(words_path, tmp_path, run_cli):
    """A teacher changes the objective only: at distill_weight 0 the fit is the plain fit, bit for bit (train_loss
    included); at 1 the weights move elsewhere."""
    teacher = fit_teacher(run_cli, words_path, tmp_path / "teacher", 0, trainer__max_steps="60")
    args = transformer_args(words_path, tmp_path / "student", max_steps=20, seed_everything="1")
    plain = run_cli("fit", *args)
    fits = {
        weight: run_cli(
            "fit",
            *args,
            "--model.teacher",
            f"[{teacher}]",
            "--model.distill_weight",
            weight,
            "--trainer.default_root_dir",
            str(tmp_path / f"distilled_{weight}"),
        )
        for weight in ("0.0", "1.0")
    }
    module, data = fits["1.0"].model, fits["1.0"].datamodule
    assert module.teacher_probabilities.shape == (len(data.examples["train"].ids), len(data.vocabulary))
    expected = plain.model.net.state_dict()
    for name, weights in fits["0.0"].model.net.state_dict().items():
        assert torch.equal(weights, expected[name]), name
    assert fits["0.0"].trainer.callback_metrics["train_loss"] == plain.trainer.callback_metrics["train_loss"]
    moved = module.net.state_dict()
    assert any(not torch.equal(moved[name], expected[name]) for name in expected)


def test_a_teacher_of_another_split_is_refused_in_one_line(words_path, tmp_path, run_cli):
    teacher = fit_teacher(run_cli, words_path, tmp_path / "teacher", 0, data__seed="7")
    args = transformer_args(words_path, tmp_path / "student", max_steps=10)
    cli_error(
        ["fit", *args, "--model.teacher", f"[{teacher}]"],
        re.escape(f"model.teacher {teacher}: the checkpoint was trained on another split of the words")
        + ".*could pass validation characters into training",
    )
    assert not list((tmp_path / "student").rglob("*.ckpt"))


def test_a_teacher_not_trained_yet_is_named_in_one_line(words_path, tmp_path):
    missing = tmp_path / "teachers" / "last.ckpt"
    args = transformer_args(words_path, tmp_path / "student", max_steps=10)
    cli_error(["fit", *args, "--model.teacher", f"[{missing}]"], f"model.teacher: {missing}: no such checkpoint file")
    assert not list((tmp_path / "student").rglob("*.ckpt"))


@pytest.mark.parametrize("weight", ["-0.1", "1.5"])
def test_a_distill_weight_outside_0_and_1_is_refused(words_path, tmp_path, weight):
    args = transformer_args(words_path, tmp_path, max_steps=10)
    cli_error(["fit", *args, "--model.distill_weight", weight], "model.distill_weight must be between 0 and 1")


def test_a_distilled_fit_with_weight_averaging_resumes_as_an_uninterrupted_one(words_path, tmp_path, run_cli):
    """The record's recipe (configs/transformer_distilled.yaml: a teacher, EMA per SGD step, dropout) stopped at
    step 40 and resumed from its last.ckpt ends at the weights, and logs the values, of one run of 60 steps."""
    from test_lightning_features import TAGS, assert_same_run, logged

    from makemore.api import scalars

    teacher = fit_teacher(run_cli, words_path, tmp_path / "teacher", 0)
    recipe = [
        *("--model.teacher", f"[{teacher}]", "--model.distill_weight", "0.5", "--model.net.dropout", "0.1"),
        *("--trainer.callbacks+=EMAWeightAveraging", "--trainer.callbacks.decay", "0.9"),
        *("--trainer.log_every_n_steps", "20", "--data.val_every_n_steps", "20"),
    ]
    whole = run_cli("fit", *transformer_args(words_path, tmp_path / "whole", max_steps=60), *recipe)
    first = run_cli("fit", *transformer_args(words_path, tmp_path / "parts", max_steps=40), *recipe)
    last = Path(first.trainer.log_dir, "checkpoints", "last.ckpt")
    rest = run_cli(
        "fit", *transformer_args(words_path, tmp_path / "parts", max_steps=60), *recipe, "--ckpt_path", str(last)
    )
    parts = {tag: scalars(first.trainer.log_dir, tag) + scalars(rest.trainer.log_dir, tag) for tag in TAGS}
    assert [step for step, _ in parts["train_loss"]] == [20, 40, 60]
    assert_same_run(whole.model.named_parameters(), rest.model.parameters(), logged(whole.trainer.log_dir), parts)


def test_the_objective_reads_nothing_back_to_the_host(words_path):
    """No operation whose output size depends on the data (a boolean-mask index, nonzero): on a GPU each is a host
    sync, twice per SGD step with its backward."""
    data = CharDataModule(path=str(words_path), block_size=10, train_on="words")
    data.setup("fit")
    torch.manual_seed(0)
    net = Transformer(len(data.vocabulary), data.hparams.block_size, n_layer=1, n_head=2, n_embd=16)
    soft = torch.full((len(data.examples["train"].ids), len(data.vocabulary)), 1 / len(data.vocabulary))
    batch = TrainBatches(data.train_pool(), batch_size=8, steps=1, epoch_steps=1, seed=0, rank=0).batch(0)
    X, Y, where = (t.flatten(0, 1) for t in batch)  # (steps x mini-batches per step, b, ...)
    logits, loss = net(X[0], Y[0])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        objective(logits, loss, X[0], where[0], soft, 0.5).backward()
    data_sized = {"aten::nonzero", "aten::masked_select", "aten::index_put_", "aten::_local_scalar_dense"}
    assert not data_sized & {event.key for event in profile.key_averages()}
