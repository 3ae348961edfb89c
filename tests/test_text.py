"""A text corpus (data.format text): the contiguous split, contexts gathered when drawn, the windowed metric, text
sampling, and one-line errors for text that cannot be trained on."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from makemore.checkpoint import network_of, read_checkpoint
from makemore.cli import main
from makemore.data import CharDataModule
from makemore.formats import default_path
from makemore.formats.text import TEXT_START, EvalWindows, read_text, vocabulary_of_text
from makemore.formats.words import vocabulary_of_words, word_examples
from makemore.models import MLP, Transformer, eval_mode
from makemore.sampling import generate_passages, generate_text
from makemore.text import Examples, Vocabulary
from tests.conftest import cli_error, small_run_args

CHARS = 4000  # of tiny shakespeare: a text small enough to train on in seconds


@pytest.fixture
def text_path(tmp_path: Path) -> Path:
    path = tmp_path / "plays.txt"
    path.write_text(read_text(default_path("text"))[:CHARS], encoding="utf-8")
    return path


def text_args(path: Path, root: Path, max_steps: int = 40, block_size: int = 16, **overrides) -> list[str]:
    """A short run of a 1-block Transformer on a text."""
    options = {
        "data.format": "text",
        "data.block_size": str(block_size),
        "data.val_every_n_steps": "20",
        "data.train_fraction": "0.8",
        "model.net": "makemore.models.Transformer",
        "model.net.n_layer": "1",
        "model.net.n_head": "2",
        "model.net.n_embd": "16",
        "model.optimizer": "torch.optim.AdamW",
        "model.learning_rate": "0.003",
        "model.lr_scheduler": "null",
        "model.passage_length": "50",
        **{key.replace("__", "."): value for key, value in overrides.items()},
    }
    return [*small_run_args(path, root, max_steps=max_steps), *(a for k, v in options.items() for a in (f"--{k}", v))]


def test_tiny_shakespeare_splits_as_the_lecture_and_nanogpt():
    data = CharDataModule(format="text", train_fraction=0.9, val_fraction=0.1, block_size=256)
    assert [len(split) for split in data.splits] == [1_003_854, 111_540, 0]
    assert data.vocab[0] == TEXT_START and len(data.vocabulary) == 66  # 65 characters and the start token
    fingerprint = data.split_fingerprint
    assert (fingerprint["train_chars"], fingerprint["val_chars"], fingerprint["test_chars"]) == (1_003_854, 111_540, 0)
    data.setup("fit")
    assert set(data.examples) == {"train", "val"}  # no test split: test says so (test_text_errors)
    train = data.examples["train"]
    assert train.ids.dtype == torch.uint8 and train.ids.numel() == 1_003_854  # one byte per character, held once
    assert data.vocabulary.decode(train.ids[:10].long().tolist()) == data.splits[0][:10]


def test_a_context_is_the_characters_before_it_in_the_split():
    text = "abcdefg"
    vocabulary = vocabulary_of_text(text)
    examples = Examples.from_segments([text], vocabulary, block_size=3)
    X, Y = examples.tensors()
    assert vocabulary.decode(Y.tolist()) == text  # every character is a target, the first one too
    shown = ["".join(vocabulary.itos[i] if i else "_" for i in row) for row in X.tolist()]
    assert shown == ["___", "__a", "_ab", "abc", "bcd", "cde", "def"]  # `_`: the start token before the split
    X2, Y2 = examples[torch.tensor([[6, 0], [3, 3]])]  # any shape of index, gathered when drawn
    assert torch.equal(X2[0, 0], X[6]) and torch.equal(Y2[1], Y[[3, 3]])


def test_word_examples_gathered_equal_the_lecture_loop():
    words = ["emma", "olivia", "ava"]
    vocabulary = vocabulary_of_words(words)
    X, Y = word_examples(words, vocabulary, 3).tensors()
    expected_X, expected_Y = [], []
    for word in words:  # the lecture's build_dataset
        context = [0] * 3
        for ch in word + ".":
            expected_X.append(context)
            expected_Y.append(vocabulary.stoi[ch])
            context = context[1:] + [vocabulary.stoi[ch]]
    assert X.tolist() == expected_X and Y.tolist() == expected_Y


def test_windows_score_every_character_once_across_processes(text_path):
    data = CharDataModule(str(text_path), format="text", block_size=16, eval_batch_size=64)
    data.setup("validate")
    val = data.examples["val"]
    seen = []
    for rank in range(3):
        for X, Y in EvalWindows(val, 64, rank, 3):
            assert X.shape[1] == 16 + Y.shape[1] - 1
            first = X[:, 16:]  # the window's inputs after its first target: its targets, shifted
            assert torch.equal(first, Y[:, :-1])
            seen += Y.flatten().tolist()
    assert len(seen) == len(val)  # 400 characters: 25 windows of 16
    assert sorted(seen) == sorted(val.ids.long().tolist())


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_a_last_shorter_window_is_scored_once_by_one_process(world_size):
    text = read_text(default_path("text"))[:403]  # 25 windows of 16 and one of 3
    vocabulary = vocabulary_of_text(text)
    examples = Examples.from_segments([text], vocabulary, block_size=16)
    targets = [Y.flatten() for rank in range(world_size) for _, Y in EvalWindows(examples, 64, rank, world_size)]
    assert sum(len(EvalWindows(examples, 64, rank, world_size)) for rank in range(world_size)) == len(targets)
    assert torch.equal(torch.sort(torch.cat(targets)).values, torch.sort(examples.ids.long()).values)
    assert sorted(len(y) for y in targets)[0] == 3  # the last window, alone in its batch


def hand_metric(net: torch.nn.Module, ids: torch.Tensor, block_size: int, sequence: bool) -> float:
    """The text metric by its definition: consecutive windows of block_size characters, each character predicted
    from the characters before it in its window (a sequence model), or from the block_size characters before it
    in the split (a network of fixed context); the split's first character from the start token."""
    ids = ids.long()
    total = 0.0
    with eval_mode(net):
        for start in range(0, len(ids), block_size):
            for t in range(start, min(start + block_size, len(ids))):
                if sequence:  # the window's characters before t, after the one before the window
                    context = ids[max(start - 1, 0) : t]
                    if start == 0:
                        context = torch.cat([torch.zeros(1, dtype=torch.long), context])
                    logits = net(context.unsqueeze(0))[0][0, -1]
                else:
                    before = ids[max(t - block_size, 0) : t]
                    context = torch.cat([torch.zeros(block_size - len(before), dtype=torch.long), before])
                    logits = net(context.unsqueeze(0))[0][0]
                total += F.cross_entropy(logits.unsqueeze(0), ids[t].unsqueeze(0)).item()
    return total / len(ids)


@pytest.mark.parametrize("network", ["transformer", "mlp"])
def test_val_loss_is_the_metric_by_its_definition(text_path, tmp_path, run_cli, network):
    args = text_args(text_path, tmp_path, max_steps=20)
    if network == "mlp":
        args += ["--model.net", "makemore.models.MLP", "--model.net.n_embd", "4", "--model.net.n_hidden", "16"]
    cli = run_cli("fit", *args)
    net, data = cli.model.net, cli.datamodule
    expected = hand_metric(net, data.examples["val"].ids, 16, sequence=network == "transformer")
    assert cli.trainer.callback_metrics["val_loss"].item() == pytest.approx(expected, abs=1e-5)
    assert isinstance(net, Transformer if network == "transformer" else MLP)


def test_text_fit_resumes_exactly(text_path, tmp_path, run_cli):
    whole = run_cli("fit", *text_args(text_path, tmp_path / "whole", max_steps=40, model__net__dropout="0.1"))
    run_cli("fit", *text_args(text_path, tmp_path / "cut", max_steps=20, model__net__dropout="0.1"))
    resumed = run_cli(
        "fit", *text_args(text_path, tmp_path / "cut", max_steps=40, model__net__dropout="0.1"), "--ckpt_path", "last"
    )
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert whole.trainer.callback_metrics["val_loss"] == resumed.trainer.callback_metrics["val_loss"]


def sample(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "makemore", "sample", *args], capture_output=True, text=True)


def test_sample_continues_a_prompt_and_refuses_what_a_text_has_not(text_path, tmp_path, run_cli):
    cli = run_cli("fit", *text_args(text_path, tmp_path, max_steps=20))
    last = str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    long_prompt = "ROMEO:\n" + "ab " * 20  # longer than block_size 16: read from its last 16 characters
    done = sample("--ckpt_path", last, "--prompt", long_prompt, "--max_new_chars", "40", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(long_prompt) and len(done.stdout) == len(long_prompt) + 40 + 1  # and a newline
    assert TEXT_START not in done.stdout
    again = sample("--ckpt_path", last, "--prompt", long_prompt, "--max_new_chars", "40", "--seed", "3")
    assert again.stdout == done.stdout  # the seed decides the passage
    for args, message in [
        (["--prompt", "ROMEO{"], r"--prompt 'ROMEO\{': '\{' not in the model's vocabulary"),
        (["--novelty", "true"], "--novelty: .* was trained on a text: it samples passages"),
        (["--prefix", "RO"], "--prefix: .* was trained on a text"),
    ]:
        refused = sample("--ckpt_path", last, *args)
        assert refused.returncode == 1 and refused.stdout == "", refused.stdout
        assert re.fullmatch("makemore: error: " + message + "[^\n]*\n", refused.stderr), refused.stderr


@pytest.mark.parametrize("network", ["transformer", "lstm"])
def test_sample_streams_what_the_window_read_at_every_step_draws(text_path, tmp_path, run_cli, capsys, network):
    args = text_args(text_path, tmp_path, max_steps=5)
    if network == "lstm":
        args += ["--model.net", "makemore.models.Recurrent", "--model.net.cell", "lstm", "--model.net.n_hidden", "16"]
    cli = run_cli("fit", *args)
    last = str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    main(["sample", "--ckpt_path", last, "--prompt", "ROMEO:", "--max_new_chars", "60", "--seed", "5"])  # block 16
    checkpoint = read_checkpoint(last)
    vocabulary = Vocabulary(checkpoint["hyper_parameters"]["vocab"])
    windowed = generate_text(
        network_of(checkpoint, last), vocabulary, 16, "ROMEO:", 60, torch.Generator().manual_seed(5), cache=False
    )
    assert capsys.readouterr().out == "ROMEO:" + "".join(windowed) + "\n"


def test_sample_draws_passages_as_one_batch(text_path, tmp_path, run_cli, capsys):
    """--num_samples N of a text's checkpoint: N passages drawn at once (what the window read again for each row of
    the batch draws), printed with a blank line between them, the first as it is drawn."""
    cli = run_cli("fit", *text_args(text_path, tmp_path, max_steps=5))
    last = str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    main(
        ["sample", "--ckpt_path", last, "--prompt", "RO", "--max_new_chars", "30", "--num_samples", "3", "--seed", "2"]
    )
    checkpoint = read_checkpoint(last)
    vocabulary = Vocabulary(checkpoint["hyper_parameters"]["vocab"])
    columns = generate_passages(
        network_of(checkpoint, last), vocabulary, 16, "RO", 30, 3, torch.Generator().manual_seed(2), cache=False
    )
    passages = ["RO" + "".join(chars) for chars in zip(*columns)]
    assert capsys.readouterr().out == "\n\n".join(passages) + "\n"
    assert len(set(passages)) == 3


STREAMING_NETWORKS = {
    "gru": ["--model.net", "makemore.models.Recurrent", "--model.net.cell", "gru", "--model.net.n_hidden", "16"],
    "transformer-rope": ["--model.net.position", "rope"],
}


@pytest.mark.parametrize("network", STREAMING_NETWORKS)
def test_sample_stream_reads_the_whole_passage(text_path, tmp_path, run_cli, capsys, network):
    """--stream: a recurrent network's state carries the whole passage, a rotary Transformer attends in every block
    to the block_size positions before (what the forward over all of it draws); a network of fixed windows (the
    Transformer's learned positions) refuses it in one line."""
    cli = run_cli("fit", *text_args(text_path, tmp_path / network, max_steps=5), *STREAMING_NETWORKS[network])
    last = str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    main(
        [
            "sample",
            "--ckpt_path",
            last,
            "--prompt",
            "ROMEO:",
            "--max_new_chars",
            "60",
            "--seed",
            "5",
            "--stream",
            "true",
        ]
    )
    checkpoint = read_checkpoint(last)
    vocabulary = Vocabulary(checkpoint["hyper_parameters"]["vocab"])
    net = network_of(checkpoint, last)
    streamed = generate_text(
        net, vocabulary, 16, "ROMEO:", 60, torch.Generator().manual_seed(5), cache=False, stream=True
    )
    assert capsys.readouterr().out == "ROMEO:" + "".join(streamed) + "\n"
    windowed = generate_text(net, vocabulary, 16, "ROMEO:", 60, torch.Generator().manual_seed(5))
    assert "".join(windowed) != "".join(streamed)  # past block_size 16 the two read different contexts

    cli = run_cli("fit", *text_args(text_path, tmp_path / "transformer", max_steps=5))
    last = str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    refused = sample("--ckpt_path", last, "--stream", "true")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "makemore: error: --stream: Transformer reads a window of block_size characters, not a text of any length (a"
        " recurrent network does; a Transformer with position rope)\n"
    )


def test_a_word_list_checkpoint_refuses_a_prompt(words_path, tmp_path, run_cli):
    cli = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=10))
    last = str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")
    for option in ["--prompt", "--stream"]:
        refused = sample("--ckpt_path", last, option, "em" if option == "--prompt" else "true")
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"makemore: error: {option}: ") and "word list" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1


def test_tensorboard_gets_a_passage_and_checkpoints_say_text(text_path, tmp_path, run_cli):
    cli = run_cli("fit", *text_args(text_path, tmp_path, max_steps=20))
    checkpoint = read_checkpoint(str(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"))
    assert checkpoint["hyper_parameters"]["vocab"][0] == TEXT_START
    assert checkpoint["datamodule_hyper_parameters"]["format"] == "text"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(cli.trainer.log_dir, size_guidance={"tensors": 0})
    events.Reload()
    passage = events.Tensors("samples/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert len(passage.replace("  \n", "\n")) == 50  # model.passage_length characters


@pytest.mark.parametrize(
    "content, options, message",
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", [], r".*plays.txt:1: NUL byte at character 7"),
        (b"", [], r".*plays.txt: no text \(the file is empty or holds only whitespace\)"),
        (b" \n\n\t \n", [], r".*plays.txt: no text"),
        (
            b"a" * 100,
            ["--data.block_size", "16"],
            r".*plays.txt: its 100 characters give train/val/test splits of"
            r" 80/10/10 characters; the val split needs at least data.block_size \+ 1 = 17",
        ),
        (
            "".join(map(chr, range(0x100, 0x300))).encode(),
            ["--data.storage", "uint8"],
            r".*plays.txt: data.storage uint8 holds ids up to 255, but the vocabulary has 513 characters",
        ),
        (b"abc" * 100, ["--data.train_on", "words"], r"data.train_on words trains on whole words: it needs"),
    ],
    ids=["binary", "empty", "whitespace", "short split", "storage", "train_on words"],
)
def test_text_errors(tmp_path, content, options, message):
    path = tmp_path / "plays.txt"
    path.write_bytes(content)
    args = ["fit", "--data.path", str(path), "--data.format", "text", "--trainer.default_root_dir", str(tmp_path)]
    cli_error([*args, "--data.block_size", "2", *options], message)
    assert not (tmp_path / "lightning_logs").exists() or not any((tmp_path / "lightning_logs").iterdir())


def test_test_without_a_test_split_says_so(text_path, tmp_path, run_cli):
    args = text_args(text_path, tmp_path, max_steps=20, data__train_fraction="0.9", data__val_fraction="0.1")
    run_cli("fit", *args)
    cli_error(["test", *args, "--ckpt_path", "last"], r".*plays.txt: the text has no test split")


def test_bits_per_character_beside_the_loss(text_path, tmp_path, run_cli):
    cli = run_cli("fit", *text_args(text_path, tmp_path, max_steps=20))
    metrics = cli.trainer.callback_metrics
    assert metrics["val_bpc"].item() == pytest.approx(metrics["val_loss"].item() / math.log(2), rel=1e-6)


def test_lr_find_sweeps_a_text(text_path, tmp_path, run_cli, capsys):
    cli = run_cli("lr_find", *text_args(text_path, tmp_path), "--num_training", "80")
    assert "suggested learning rate" in capsys.readouterr().out
    assert (Path(cli.trainer.log_dir) / "lr_find.png").stat().st_size > 0
