"""The lecture ladder: every network on one harness, scored on the same events with one exact metric."""

import copy
import inspect
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cli_error, small_run_args

from makemore.checkpoint import read_checkpoint
from makemore.formats.words import build_examples, vocabulary_of_words
from makemore.models import Bigram, BoW, Ensemble, Recurrent, Transformer, WaveNet, eval_mode, next_char_logits
from makemore.models.base import word_start_aligned
from makemore.module import load_checkpoint
from makemore.runs import CLOSED_FORM, LADDER, TEACHERS, TEXT, config_path, load_yaml, run_name, split_loss
from makemore.text import Vocabulary

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", LADDER)
def test_every_ladder_model_fits_tests_and_samples_from_its_checkpoint(model, words_path, tmp_path, run_cli, capsys):
    config = ROOT / "configs" / f"{model}.yaml"
    args = ["--config", str(config), *small_run_args(words_path, tmp_path, max_steps=100)]
    if model in TEACHERS:  # a distilled model: its teacher's config, trained briefly on the same split, first
        teacher = ROOT / "configs" / f"{TEACHERS[model]}.yaml"
        taught = run_cli(
            "fit", "--config", str(teacher), *small_run_args(words_path, tmp_path / "teacher", max_steps=50)
        )
        args += ["--model.teacher", f"[{Path(taught.trainer.log_dir) / 'checkpoints' / 'last.ckpt'}]"]
    fit = run_cli("fit", *args)
    assert fit.trainer.global_step == 100
    val = fit.trainer.callback_metrics["val_loss"].item()
    assert val < math.log(len(fit.datamodule.vocabulary))  # learned something
    assert fit.trainer.callback_metrics["val_bpc"].item() == pytest.approx(val / math.log(2), rel=1e-6)
    test = run_cli("test", *args, "--ckpt_path", "best")
    assert math.isfinite(test.trainer.callback_metrics["test_loss"].item())
    capsys.readouterr()
    last = str(Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt")
    run_cli("sample", "--ckpt_path", last, "--num_samples", "5", "--seed", "0")  # the checkpoint alone
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 5 and all(set(name) <= set(fit.datamodule.vocab[1:]) for name in names)


def event_nll_by_whole_words(net: torch.nn.Module, words: list[str], vocabulary: Vocabulary) -> float:
    """makemore.py's evaluation: each word as one sequence `.w1..wn`, every position scored, summed over events."""
    total, events = 0.0, 0
    for word in words:
        ids = torch.tensor([[0, *vocabulary.encode(word)]])
        logits, _ = net(ids)  # a window that is the word itself, from its start token: one forward
        targets = torch.tensor([*vocabulary.encode(word), 0])
        total += F.cross_entropy(logits[0], targets, reduction="sum").item()
        events += len(targets)
    return total / events


@pytest.mark.parametrize(
    "net_class",
    [Recurrent, Transformer, partial(Transformer, position="rope")],
    ids=["recurrent", "transformer", "transformer-rope"],
)
def test_sequence_models_score_the_same_events_as_whole_word_evaluation(net_class):
    words = ["emma", "olivia", "ava", "x", "isabella"]
    vocabulary = vocabulary_of_words(words)
    torch.manual_seed(0)
    net = net_class(len(vocabulary), 12).eval()
    X, Y = build_examples(words, vocabulary, 12)  # one window per character and word end, as the data builds
    windowed = F.cross_entropy(next_char_logits(net, X), Y).item()  # what validation and test compute
    assert windowed == pytest.approx(event_nll_by_whole_words(net, words, vocabulary), abs=1e-5)
    # the training loss on whole-word windows (data.train_on words) is the same events' mean, each once
    ends = Y == 0
    _, train_loss = net(X[ends], Y[ends])
    assert train_loss.item() == pytest.approx(windowed, abs=1e-5)


def test_bow_predicts_from_the_characters_so_far_as_makemore_py_averages_them():
    words = ["emma", "olivia", "ava", "x", "isabella"]
    vocabulary = vocabulary_of_words(words)
    torch.manual_seed(0)
    net = BoW(len(vocabulary), 12).eval()
    X, Y = build_examples(words, vocabulary, 12)
    windowed = F.cross_entropy(next_char_logits(net, X), Y).item()  # what validation and test compute
    assert windowed == pytest.approx(event_nll_by_whole_words(net, words, vocabulary), abs=1e-5)
    ends = Y == 0
    assert net(X[ends], Y[ends])[1].item() == pytest.approx(windowed, abs=1e-5)  # training on whole words
    word = torch.tensor([[0, *vocabulary.encode("isabella")]])
    logits, _ = net(word)
    # makemore.py's CausalBoW: a softmax over a causal mask of zeros, each position averaging itself and before
    t = word.shape[1]
    x = net.embedding(word) + net.position(torch.arange(t))
    average = torch.zeros(t, t).masked_fill(torch.ones(t, t).tril() == 0, float("-inf")).softmax(-1)
    x = x + average @ x
    torch.testing.assert_close(logits, net.head(x + net.mlp(x)))
    # causal: the prediction at each position depends only on the characters up to it
    generator = torch.Generator().manual_seed(0)
    for position in range(t - 1):
        changed = word.clone()
        changed[0, position + 1 :] = torch.randint(1, len(vocabulary), (t - position - 1,), generator=generator)
        torch.testing.assert_close(net(changed)[0][:, : position + 1], logits[:, : position + 1])
    # a short word's outputs are the same alone as beside a long one (the batch's width is the long word's)
    ava = X[ends][2:3]
    real = torch.cat([ava[:, 1:] != 0, torch.ones(1, 1, dtype=torch.bool)], 1)
    torch.testing.assert_close(net(ava)[0][real], net(X[ends])[0][2:3][real])


def test_an_ensemble_predicts_its_members_mean_and_trains_each_on_its_own_share():
    words = ["emma", "olivia", "ava", "x", "isabella", "mia", "sophia"]
    vocabulary = vocabulary_of_words(words)
    torch.manual_seed(0)
    net = Ensemble(len(vocabulary), 12, partial(Transformer, n_layer=1, n_embd=16), members=3)
    X, Y = build_examples(words, vocabulary, 12)
    with eval_mode(net):  # the prediction: the average of the members' probabilities
        mixed = next_char_logits(net, X).softmax(-1)
        members = torch.stack([next_char_logits(member, X).softmax(-1) for member in net.nets])
    torch.testing.assert_close(mixed, members.mean(0))
    assert not torch.allclose(members[0], members[1])  # each member its own initialisation
    ends = Y == 0  # training: each member's gradient is its own loss's, on its own share of the batch
    alone = [copy.deepcopy(member) for member in net.nets]
    _, loss = net(X[ends], Y[ends])
    loss.backward()
    own_losses = []
    for member, copied, x, y in zip(net.nets, alone, X[ends].tensor_split(3), Y[ends].tensor_split(3)):
        _, own = copied(x, y)
        own.backward()
        own_losses.append(own.item())
        for trained, reference in zip(member.parameters(), copied.parameters()):
            torch.testing.assert_close(trained.grad, reference.grad)
    assert loss.item() == pytest.approx(sum(own_losses) / 3)  # what train_loss shows: the members' mean
    with pytest.raises(ValueError, match="cannot be dealt out to 3 members"):
        net(X[:2], Y[:2])
    with pytest.raises(ValueError, match="members must be at least 1"):
        Ensemble(len(vocabulary), 12, Transformer, members=0)


@pytest.mark.parametrize("net_class", [Recurrent, Transformer], ids=["recurrent", "transformer"])
def test_a_batch_of_short_words_runs_a_short_sequence_with_the_same_outputs(net_class):
    words = ["emma", "ava", "x", "isabellamaria"]
    vocabulary = vocabulary_of_words(words)
    torch.manual_seed(0)
    net = net_class(len(vocabulary), 16).eval()
    X, Y = build_examples(words, vocabulary, 16)
    short = X[(Y == 0)][:3]  # the whole-word windows of emma, ava, x: 5 columns needed of 16
    assert word_start_aligned(short)[0].shape == (3, 5)
    real = torch.cat([short[:, 1:] != 0, torch.ones(3, 1, dtype=torch.bool)], 1)  # positions predicting a character
    logits, _ = net(short)
    alongside_a_long_word, _ = net(X[(Y == 0)])  # isabellamaria needs 14 columns
    assert logits.shape == (3, 16, len(vocabulary))
    torch.testing.assert_close(logits[real], alongside_a_long_word[:3][real])


def test_learned_bigram_lands_on_the_counting_bigram():
    words = ["emma", "olivia", "ava", "anna", "mia", "amelia", "ella", "liam"]
    vocabulary = vocabulary_of_words(words)
    X, Y = build_examples(words, vocabulary, 1)
    smoothed = Bigram.from_counts(X, Y, len(vocabulary), smoothing=1.0)  # lecture part 1's model
    probs = smoothed.logits.exp()
    assert torch.allclose(probs.sum(1), torch.ones(len(vocabulary)), atol=1e-6)
    e, m = vocabulary.encode("em")
    count_em, count_e = sum(w.count("em") for w in words), sum(w.count("e") for w in words)
    assert probs[e, m].item() == pytest.approx((count_em + 1) / (count_e + len(vocabulary)))
    # the counts without smoothing maximise the likelihood of the words: where gradient descent ends up
    counted = Bigram.from_counts(X, Y, len(vocabulary), smoothing=0.0)
    learned = Bigram(len(vocabulary), 1)
    optimizer = torch.optim.Adam(learned.parameters(), lr=0.1)
    for _ in range(500):
        _, loss = learned(X, Y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() == pytest.approx(F.cross_entropy(next_char_logits(counted, X), Y).item(), abs=0.01)


def test_training_on_words_needs_a_sequence_model(words_path, tmp_path):
    args = small_run_args(words_path, tmp_path, data__train_on="words", data__block_size="10")
    cli_error(["fit", *args], r"data.train_on words .* MLP predicts only the next character")


def test_training_on_words_needs_room_for_the_longest_word(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("ab\n\nabcdefgh\n" + "abcdefgh\n" * 30)  # the longest word is first on line 3
    args = small_run_args(words, tmp_path, data__train_on="words", data__block_size="5")
    config = ["--config", str(ROOT / "configs" / "gru.yaml")]  # first: what comes later overrides it
    cli_error(["fit", *config, *args], r".*words.txt:3: .*'abcdefgh'.* at least 9")


def test_wavenet_needs_a_power_of_its_grouping(words_path, tmp_path):
    args = small_run_args(words_path, tmp_path, data__block_size="6")
    cli_error(["fit", "--config", str(ROOT / "configs" / "wavenet.yaml"), *args], r".*power of 2 .*got 6")


def test_an_ensemble_needs_a_batch_it_can_deal_out(words_path, tmp_path):
    args = small_run_args(words_path, tmp_path, data__batch_size="2")
    config = str(ROOT / "configs" / "transformer_ensemble.yaml")
    cli_error(
        ["fit", "--config", config, *args], r"model.net: Ensemble: a batch of 2 .* 3 members \(data.batch_size 2\)$"
    )
    assert not list(tmp_path.rglob("*.ckpt"))


def test_bad_model_names_and_options_are_one_line(words_path, tmp_path):
    args = small_run_args(words_path, tmp_path)
    cli_error(["fit", *args, "--model.net", "makemore.models.Bigrm"], ".*makemore.models.Bigrm")
    cli_error(
        ["fit", "--config", str(ROOT / "configs" / "transformer.yaml"), *args, "--model.net.n_hidden", "3"],
        ".*n_hidden",
    )


def test_another_models_checkpoint_does_not_resume(words_path, tmp_path, run_cli):
    fit = run_cli(
        "fit", "--config", str(ROOT / "configs" / "gru.yaml"), *small_run_args(words_path, tmp_path, max_steps=20)
    )
    last = str(Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt")
    args = ["--config", str(ROOT / "configs" / "lstm.yaml"), *small_run_args(words_path, tmp_path, max_steps=40)]
    message = cli_error(["fit", *args, "--ckpt_path", last], ".*resuming continues the same run")
    assert "model.net.init_args.cell (checkpoint 'gru', now 'lstm')" in message


def test_a_network_keeps_its_own_defaults_when_chosen_on_the_command_line(words_path, tmp_path, run_cli):
    args = small_run_args(words_path, tmp_path, max_steps=10, data__block_size="8")
    cli = run_cli("fit", *args, "--model.net", "makemore.models.Transformer", "--model.net.n_head", "2")
    # not the default MLP's n_embd of 10: jsonargparse would carry it over to any class that takes one
    own = {
        name: parameter.default
        for name, parameter in inspect.signature(Transformer).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    assert own["n_embd"] == 64
    assert cli.model.hparams.net["init_args"] == {**own, "n_head": 2}


def test_evaluation_and_sampling_never_move_batchnorm_statistics(words_path, tmp_path, run_cli):
    args = ["--config", str(ROOT / "configs" / "wavenet.yaml"), *small_run_args(words_path, tmp_path, max_steps=50)]
    fit = run_cli("fit", *args)
    last = str(Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt")
    saved = {k: v for k, v in read_checkpoint(last)["state_dict"].items() if "running" in k}
    assert saved and not all(torch.equal(v, torch.zeros_like(v)) for v in saved.values())

    def running(module) -> dict:
        return {k: v for k, v in module.state_dict().items() if "running" in k}

    for subcommand in ("validate", "test"):
        cli = run_cli(subcommand, *args, "--ckpt_path", last)
        assert all(torch.equal(running(cli.model)[k], saved[k]) for k in saved), subcommand
    module = load_checkpoint(last)
    module.train()  # even a module left in training mode samples in eval mode
    module.sample(20, torch.Generator().manual_seed(0))
    assert all(torch.equal(running(module)[k], saved[k]) for k in saved)
    # the learning-rate finder sweeps, then puts the weights and statistics back as they were
    fresh = run_cli("lr_find", *args)
    initial = WaveNet(len(fit.datamodule.vocabulary), 8)
    assert all(torch.equal(v, running(initial)[k.removeprefix("net.")]) for k, v in running(fresh.model).items())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed support")
def test_a_sequence_model_on_whole_words_under_ddp(words_path, tmp_path, run_cli):
    """Two CPU processes training the GRU on whole words: one run, and the val_loss reduced over both processes'
    halves of the split equals one process's on the whole split."""
    import re

    from test_resume import makemore

    config = ["--config", str(ROOT / "configs" / "gru.yaml")]
    args = [*config, *small_run_args(words_path, tmp_path, max_steps=100)]
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    process = makemore("fit", *args, *ddp)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    (best,) = tmp_path.rglob("step=*.ckpt")
    assert read_checkpoint(str(best))["global_step"] == 100
    logged = float(re.search(r"val_loss=([0-9.]+?)\.ckpt", best.name).group(1))
    single = run_cli("validate", *config, *small_run_args(words_path, tmp_path / "one"), "--ckpt_path", str(best))
    assert single.trainer.callback_metrics["val_loss"].item() == pytest.approx(logged, abs=1e-4)


def test_the_text_ladder_is_its_own_list_of_text_configs():
    assert not set(TEXT) & set(LADDER)  # LADDER stays the names ladder
    assert set(CLOSED_FORM) == {"bigram", "shakespeare/bigram"}
    for name in TEXT:
        data = load_yaml(config_path(name))["data"]
        assert data["format"] == "text", name
    assert run_name(config_path("shakespeare/bigram")) == "shakespeare/bigram"
    assert run_name(config_path("bigram")) == "bigram"
    assert run_name(ROOT / "configs" / "shakespeare" / "bigram.yaml") == "shakespeare/bigram"  # the checkout's link


def test_a_text_bigram_scores_the_same_windowed_as_character_by_character(tmp_path):
    """The text bigram's anchor is scored by the text metric (EvalWindows); with block_size 1 each window is one
    character and its context the character before it (the start token at the split's start), so the metric is
    the per-character mean, and the sequence path of split_loss reads each window once."""
    from makemore.data import CharDataModule
    from makemore.formats import default_path

    path = tmp_path / "text.txt"
    path.write_text(default_path("text").read_text()[:20000])
    data = CharDataModule(str(path), format="text", block_size=1, train_fraction=0.9, val_fraction=0.1)
    data.setup("fit")
    counts = Bigram.from_counts(*data.examples["train"].tensors(), len(data.vocabulary))
    for split in ("train", "val"):
        X, Y = data.examples[split].tensors()  # each character from the one before it, one forward pass
        by_character = F.cross_entropy(counts(X)[0], Y).item()
        assert split_loss(counts, data, split) == pytest.approx(by_character, rel=1e-6)
    # a sequence model: split_loss is what validation logs (the module's _scored over the same windows)
    from makemore.module import MakemoreModule

    data = CharDataModule(str(path), format="text", block_size=8, train_fraction=0.9, val_fraction=0.1)
    data.setup("fit")
    torch.manual_seed(0)
    module = MakemoreModule(data.vocab, 8, net=partial(Transformer, n_layer=1, n_head=2, n_embd=16))
    total, count = 0.0, 0
    with eval_mode(module.net):
        for X, Y in data.whole_split("val"):
            logits, targets = module._scored(X, Y)
            total += F.cross_entropy(logits, targets, reduction="sum").item()
            count += len(targets)
    assert split_loss(module.net, data, "val") == pytest.approx(total / count, rel=1e-6)
