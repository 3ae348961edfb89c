"""What a user sees in TensorBoard, read back with TensorBoard's own event reader."""

from pathlib import Path

import pytest
from conftest import small_run_args, write_syllable_words
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from makemore.cli import run_cli

    root = tmp_path_factory.mktemp("run")
    words = write_syllable_words(root / "words.txt")
    cli = run_cli(["fit", *small_run_args(words, root, max_steps=120)])
    events = EventAccumulator(cli.trainer.log_dir, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return cli, events, words, root


def test_scalars_count_sgd_steps(fitted):
    cli, events, *_ = fitted
    tags = events.Tags()["scalars"]
    for tag in ["train_loss", "lr", "val_loss", "val_perplexity"]:
        assert tag in tags
    # log_every_n_steps counts SGD steps: one train_loss point every 10, placed at the step it reached
    assert [e.step for e in events.Scalars("train_loss")] == list(range(10, 121, 10))
    assert [e.step for e in events.Scalars("val_loss")] == [50, 100, 120]  # each 50-step epoch end, and the last step


def test_embedding_figure_projector_and_samples(fitted):
    cli, events, *_ = fitted
    assert "plots/embeddings" in events.Tags()["images"]
    assert any(tag.startswith("samples") for tag in events.Tags()["tensors"])
    log_dir = Path(cli.trainer.log_dir)
    assert "character_embeddings" in (log_dir / "projector_config.pbtxt").read_text()
    labels = next(log_dir.glob("*/character_embeddings/metadata.tsv")).read_text().split()
    assert labels == list(cli.datamodule.vocab)


def test_test_loss_is_logged(fitted, run_cli):
    cli, _, words, root = fitted
    test = run_cli("test", *small_run_args(words, root), "--ckpt_path", cli.trainer.checkpoint_callback.best_model_path)
    events = EventAccumulator(test.trainer.log_dir)
    events.Reload()
    assert {"test_loss", "test_perplexity"} <= set(events.Tags()["scalars"])
