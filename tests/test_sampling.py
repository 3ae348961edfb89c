"""Sampling the way researchers work: temperature, top-k, prefixes, log-probabilities and novelty."""

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cli_error, small_run_args

from makemore.models import MLP, Transformer, next_char_logits
from makemore.sampling import draw, novelty, sample_chunks, sample_words, scaled, word_log_probs
from makemore.text import Vocabulary

VOCABULARY = Vocabulary(".abcdefghijklmnopqrstuvwxyz")


def greedy(net: torch.nn.Module, block_size: int, max_length: int, prefix: str = "") -> str:
    """The most likely character at every step, written out one step at a time."""
    name = prefix
    with torch.no_grad():
        while len(name) < max_length:
            context = ([0] * block_size + VOCABULARY.encode(name))[-block_size:]
            ix = int(next_char_logits(net, torch.tensor([context])).argmax())
            if ix == 0:
                break
            name += VOCABULARY.itos[ix]
    return name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [1, 10])
def test_a_draw_is_torch_multinomials_for_the_same_seed(rows, dtype):
    """draw() draws as torch.multinomial(probs, 1) draws (its exponential race, without its check that waits for a
    result): the same ids for a seed, so every passage and name a seed gave stays the same."""
    logits = torch.randn(100, rows, 66, generator=torch.Generator().manual_seed(0), dtype=dtype)
    for seed, row_logits in enumerate(logits):
        masked = row_logits.masked_fill(row_logits < -2, float("-inf"))  # some characters impossible
        for temperature, top_k in ((1.0, None), (0.7, 5), (1e-40, None)):
            kept = masked
            if top_k is not None:
                kept = masked.masked_fill(masked < torch.topk(masked, top_k, dim=1).values[:, -1:], float("-inf"))
            probs = torch.softmax(scaled(kept, temperature), dim=-1)
            expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed))
            drawn = draw(masked, torch.Generator().manual_seed(seed), temperature, top_k)
            assert torch.equal(drawn, expected), (seed, temperature, top_k)


@pytest.mark.parametrize("net_class", [MLP, Transformer], ids=["mlp", "transformer"])
def test_temperature_near_zero_and_top_k_one_give_the_most_likely_name(net_class):
    torch.manual_seed(0)
    net = net_class(len(VOCABULARY), 4).eval()
    expected = greedy(net, 4, 12)
    cold = sample_words(net, VOCABULARY, 4, 5, 12, torch.Generator().manual_seed(0), temperature=1e-4)
    top1 = sample_words(net, VOCABULARY, 4, 5, 12, torch.Generator().manual_seed(1), top_k=1)
    assert cold == top1 == [expected] * 5
    with_prefix = sample_words(net, VOCABULARY, 4, 3, 12, top_k=1, prefix="qu")
    assert with_prefix == [greedy(net, 4, 12, prefix="qu")] * 3


def test_a_prefix_starts_every_name_and_top_k_limits_the_characters():
    torch.manual_seed(0)
    net = MLP(len(VOCABULARY), 3).eval()
    names = sample_words(net, VOCABULARY, 3, 50, 20, torch.Generator().manual_seed(0), prefix="zo")
    assert all(name.startswith("zo") for name in names) and len(set(names)) > 1
    # with top_k 2 the first character is one of the two most likely after the start token
    first = next_char_logits(net, torch.zeros(1, 3, dtype=torch.long))[0].topk(2).indices.tolist()
    names = sample_words(net, VOCABULARY, 3, 50, 20, torch.Generator().manual_seed(0), top_k=2)
    assert {VOCABULARY.stoi[name[0]] if name else 0 for name in names} <= set(first)


def test_a_names_log_probability_is_the_sum_over_its_characters():
    torch.manual_seed(0)
    net = Transformer(len(VOCABULARY), 6, n_layer=1, n_embd=16).eval()
    names = ["emma", "x", "olivianna"]  # one longer than the context: the window slides
    expected = []
    with torch.no_grad():
        for name in names:
            total, ids = 0.0, VOCABULARY.encode(name) + [0]
            for i, target in enumerate(ids):
                context = ([0] * 6 + ids[:i])[-6:]
                total += F.log_softmax(next_char_logits(net, torch.tensor([context])), -1)[0, target].item()
            expected.append(total)
    assert word_log_probs(net, VOCABULARY, 6, names) == pytest.approx(expected, abs=1e-4)


def test_a_module_samples_with_the_same_options(words_path, tmp_path, run_cli):
    """MakemoreModule.sample (a notebook's way) draws as `makemore sample` does, options included."""
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=50))
    module, net = fit.model, fit.model.net
    vocabulary, block = fit.datamodule.vocabulary, fit.datamodule.hparams.block_size
    options = {"temperature": 0.7, "top_k": 3, "prefix": "a", "max_length": 8}
    drawn = module.sample(10, torch.Generator().manual_seed(0), **options)
    assert drawn == sample_words(net, vocabulary, block, 10, 8, torch.Generator().manual_seed(0), 0.7, 3, "a")
    assert all(name.startswith("a") and len(name) <= 8 for name in drawn)
    with pytest.raises(ValueError, match="'Z' not in the model's vocabulary"):
        module.sample(1, prefix="Z")


def test_novelty_classes_names_against_the_split():
    splits = (["emma", "ava"], ["mia"], ["zoe"])
    assert novelty(["ava", "zoe", "mia", "bob"], splits) == ["train", "val/test", "val/test", "new"]


def test_sample_options_from_the_command_line(words_path, tmp_path, run_cli, capsys):
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=100))
    last = str(Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    run_cli("sample", "--ckpt_path", last, "--num_samples", "6", "--prefix", "ma", "--log_prob", "true")
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6 and all(name.startswith("ma") and float(value) < 0 for name, value in rows)
    run_cli("sample", "--ckpt_path", last, "--num_samples", "30", "--novelty", "true")
    output = capsys.readouterr()
    classes = [line.split("\t")[1] for line in output.out.splitlines()]
    assert len(classes) == 30 and set(classes) <= {"train", "val/test", "new"}
    summary = output.err.strip().splitlines()[-1]
    assert summary.startswith("makemore: 30 names: ") and f"{classes.count('new')} new" in summary
    # the share of new names goes to TensorBoard at each validation
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(fit.trainer.log_dir)
    events.Reload()
    assert "samples_new" in events.Tags()["scalars"]

    other = tmp_path / "other.txt"
    other.write_text("anna\nbob\ncarl\n" * 5)
    cli_error(["sample", "--ckpt_path", last, "--novelty", "true", "--words", str(other)], ".*--words")


@pytest.mark.parametrize(
    "option, pattern",
    [
        (["--temperature", "0"], "--temperature must be above 0"),
        (["--top_k", "0"], "--top_k must be at least 1"),
        (["--prefix", "m#"], "--prefix 'm#': '#' not in the model's vocabulary"),
        (["--max_length", "1", "--prefix", "ma"], "--max_length 1 leaves no room"),
    ],
    ids=["temperature", "top_k", "prefix", "max_length"],
)
def test_bad_sample_options_are_one_line(words_path, tmp_path, run_cli, option, pattern):
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=10))
    last = str(Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt")
    cli_error(["sample", "--ckpt_path", last, *option], pattern)


def test_names_are_drawn_a_chunk_at_a_time_however_many_are_asked_for():
    """N, 10N or 10**12 names: the same first names, drawn when asked for, never more than a chunk in one batch."""
    torch.manual_seed(0)
    net = MLP(len(VOCABULARY), 3).eval()
    rows: list[int] = []  # the batch size of every forward
    net.register_forward_hook(lambda module, args, output: rows.append(len(args[0])))

    def chunks(num_samples: int) -> "itertools.islice":
        drawn = sample_chunks(net, VOCABULARY, 3, num_samples, 20, torch.Generator().manual_seed(0), chunk_size=8)
        return itertools.islice(drawn, 10)  # the first 10 chunks at most

    first = list(chunks(80))
    assert [len(chunk) for chunk in first] == [8] * 10
    assert list(chunks(800)) == list(chunks(10**12)) == first
    assert set(rows) == {8}
    # the last chunk holds the rest, and a chunk as large as the whole draws what one batch draws
    assert [len(chunk) for chunk in sample_chunks(net, VOCABULARY, 3, 20, 20, chunk_size=8)] == [8, 8, 4]
    whole = sample_words(net, VOCABULARY, 3, 8, 20, torch.Generator().manual_seed(0))
    assert whole == first[0]


@pytest.fixture
def trained(words_path, tmp_path, run_cli) -> str:
    """The last checkpoint of 100 SGD steps on the tiny word list."""
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=100))
    return str(Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt")


def test_sample_runs_torch_on_one_thread_unless_told(trained, run_cli, capsys):
    """One character at a time from a small model: more threads only wait on each other, and on a machine whose
    cores other processes share they slow the draw several-fold; --num_threads as fit's."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_cli("sample", "--ckpt_path", trained, "--num_samples", "3")
        one = capsys.readouterr().out
        assert torch.get_num_threads() == 1
        run_cli("sample", "--ckpt_path", trained, "--num_samples", "3", "--num_threads", "2")
        assert torch.get_num_threads() == 2 and capsys.readouterr().out == one  # the same names
        run_cli("sample", "--ckpt_path", trained, "--num_samples", "3", "--num_threads", "null")
        assert torch.get_num_threads() == 2  # torch's own setting left as it is
        cli_error(["sample", "--ckpt_path", trained, "--num_threads", "0"], r"--num_threads must be at least 1")
    finally:
        torch.set_num_threads(before)


def test_a_huge_max_length_draws_names_to_their_end(trained, run_cli, capsys):
    """Columns grow as drawn: --max_length 10**9 allocates nothing ahead, and each name stops at its `.`."""
    capsys.readouterr()
    run_cli("sample", "--ckpt_path", trained, "--max_length", str(10**9))
    names = capsys.readouterr().out.splitlines()
    run_cli("sample", "--ckpt_path", trained)  # the checkpoint's max_sample_length
    assert names == capsys.readouterr().out.splitlines()
    assert len(names) == 20 and max(map(len, names)) < 20


def test_a_huge_num_samples_streams_names_as_they_are_drawn(trained):
    """10**12 names: printed a chunk at a time; a reader that stops (`| head`) ends it quietly."""
    command = [sys.executable, "-m", "makemore", "sample", "--ckpt_path", trained, "--num_samples", str(10**12)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    names = [process.stdout.readline() for _ in range(1500)]  # the first chunk and half the second
    process.stdout.close()
    assert process.wait() == 0 and process.stderr.read() == ""
    assert all(name.endswith("\n") for name in names)  # none cut short: "" would be the end of the output
    assert set("".join(names)) <= set("abehijlmnorst\n")  # the letters of the tiny word list's syllables
