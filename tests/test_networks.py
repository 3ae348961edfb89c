"""The network is a parameter: any nn.Module with forward(idx, targets=None) -> (logits, loss) trains through the
CLI from a class_path, with no change to the module, the data, the CLI or the step machinery."""

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import small_run_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from makemore.checkpoint import read_checkpoint
from makemore.errors import CheckpointError
from makemore.module import load_checkpoint


class LastCharTable(nn.Module):
    """A bigram-like network defined outside the package: logits from the last context character alone.

    Args:
        vocab_size: number of tokens.
        block_size: context length (only the last character is used).
        scale: initial scale of the table.
    """

    def __init__(self, vocab_size: int, block_size: int, scale: float = 0.01) -> None:
        super().__init__()
        self.table = nn.Parameter(scale * torch.randn(vocab_size, vocab_size))

    def forward(self, idx, targets=None):
        logits = self.table[idx[:, -1]]  # (b, vocab_size)
        return logits, None if targets is None else F.cross_entropy(logits, targets)


class NotAModule:
    def __init__(self, vocab_size: int, block_size: int) -> None:
        pass

    def forward(self, idx, targets=None):
        return None, None


def test_a_network_from_outside_the_package_trains_tests_and_samples(words_path, tmp_path, run_cli, capsys):
    net = ["--model.net", f"{__name__}.LastCharTable", "--model.net.scale", "0.1", "--model.learning_rate", "1.0"]
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=300), *net)
    assert isinstance(fit.model.net, LastCharTable) and fit.trainer.global_step == 300
    assert fit.trainer.callback_metrics["val_loss"] < 2.4  # well below the uniform ln(15) = 2.7
    best = fit.trainer.checkpoint_callback.best_model_path

    # the checkpoint names the network as plain data and rebuilds it alone (weights_only)
    own = f"{__name__}.LastCharTable"  # a class outside makemore: a checkpoint is read only when it is allowed
    with pytest.raises(CheckpointError, match=f"it names {own} to import"):
        read_checkpoint(best)
    saved = read_checkpoint(best, allowed=own)["hyper_parameters"]["net"]
    assert saved == {"class_path": own, "init_args": {"scale": 0.1}}
    last = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert torch.equal(load_checkpoint(str(last), allow_class=[own]).net.table, fit.model.net.table)

    test = run_cli("test", *small_run_args(words_path, tmp_path), *net, "--ckpt_path", best)
    assert 0 < test.trainer.callback_metrics["test_loss"] < 2.7
    capsys.readouterr()
    run_cli("sample", "--ckpt_path", best, "--num_samples", "5", "--allow_class", own)
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 5 and all(set(name) <= set(fit.datamodule.vocab[1:]) for name in names)

    # no character embedding: no embedding figure, and no error
    events = EventAccumulator(fit.trainer.log_dir)
    events.Reload()
    assert "plots/embeddings" not in events.Tags()["images"] and "val_loss" in events.Tags()["scalars"]


def test_a_class_that_is_not_an_nn_module_is_a_clear_error(words_path, tmp_path, run_cli):
    with pytest.raises(SystemExit, match="^makemore: error: model.net must be an nn.Module class"):
        run_cli("fit", *small_run_args(words_path, tmp_path), "--model.net", f"{__name__}.NotAModule")


def test_a_checkpoint_without_its_network_is_refused(words_path, tmp_path, run_cli):
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=50))
    checkpoint = torch.load(fit.trainer.checkpoint_callback.best_model_path, weights_only=True)
    del checkpoint["hyper_parameters"]["net"]
    torch.save(checkpoint, tmp_path / "netless.ckpt")
    for command in (["sample"], ["test", *small_run_args(words_path, tmp_path)]):
        with pytest.raises(SystemExit, match="netless.ckpt: not a makemore checkpoint"):
            run_cli(*command, "--ckpt_path", str(tmp_path / "netless.ckpt"))


def test_the_module_takes_a_network_in_python(words_path):
    from functools import partial

    from makemore.data import CharDataModule
    from makemore.module import MakemoreModule

    data = CharDataModule(str(words_path))
    module = MakemoreModule(data.vocab, block_size=3, net=partial(LastCharTable, scale=0.5))
    assert module.hparams.net == {"class_path": f"{__name__}.LastCharTable", "init_args": {"scale": 0.5}}
