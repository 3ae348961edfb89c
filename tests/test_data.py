"""The vocabulary, context windows and splits, checked against the lecture and by hand."""

import hashlib

import torch
from conftest import NAMES_SHA256
from torch.utils.data import TensorDataset

from makemore.data import CharDataModule
from makemore.formats import default_path
from makemore.formats.words import EvalBatches, build_examples, read_words, split_words, vocabulary_of_words
from makemore.steps import TrainBatches


def naive_examples(words, vocabulary, block_size):
    """The lecture's loop, for comparison with the vectorised build."""
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = vocabulary.stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X).view(-1, block_size), torch.tensor(Y)


def test_names_vocabulary_and_split_sizes_match_the_lecture(names_path):
    words = read_words(names_path)
    vocabulary = vocabulary_of_words(words)
    assert len(words) == 32033
    assert str(vocabulary) == ".abcdefghijklmnopqrstuvwxyz" and len(vocabulary) == 27
    train, val, test = split_words(words, 0.8, 0.1, seed=42)
    assert (len(train), len(val), len(test)) == (25626, 3203, 3204)
    # the lecture's Xtr, Xdev, Xte shapes with block_size 3
    sizes = [len(build_examples(split, vocabulary, 3)[1]) for split in (train, val, test)]
    assert sizes == [182625, 22655, 22866]
    assert sizes == [sum(len(w) + 1 for w in split) for split in (train, val, test)]


def test_shipped_names_are_the_lecture_file(names_path):
    assert names_path == default_path()  # the fixture checked its sha256
    assert hashlib.sha256(default_path().read_bytes()).hexdigest() == NAMES_SHA256


def test_contexts_of_emma_by_hand():
    vocabulary = vocabulary_of_words(["emma"])  # . a e m
    X, Y = build_examples(["emma"], vocabulary, block_size=3)
    decoded = [(vocabulary.decode(x), vocabulary.itos[y]) for x, y in zip(X.tolist(), Y.tolist())]
    assert decoded == [("...", "e"), ("..e", "m"), (".em", "m"), ("emm", "a"), ("mma", ".")]


def test_vectorised_build_equals_the_lecture_loop():
    words = ["a", "bob", "élodie", "zoë", "x" * 12, "anna"]
    vocabulary = vocabulary_of_words(words)
    for block_size in (1, 3, 8):
        X, Y = build_examples(words, vocabulary, block_size)
        X0, Y0 = naive_examples(words, vocabulary, block_size)
        assert torch.equal(X, X0) and torch.equal(Y, Y0)


def test_splits_are_disjoint_complete_and_seeded(names_path):
    words = read_words(names_path)
    train, val, test = split_words(words, 0.8, 0.1, seed=42)
    assert sorted(train + val + test) == sorted(words)
    assert (train, val, test) == split_words(words, 0.8, 0.1, seed=42)
    assert train != split_words(words, 0.8, 0.1, seed=43)[0]


def test_datamodule_builds_each_split_once(words_path):
    data = CharDataModule(str(words_path), block_size=4)
    data.setup("fit")
    train = data.examples["train"]
    data.setup("test")  # a second stage reuses the examples
    assert data.examples["train"] is train
    X, Y = train.tensors()
    assert X.shape[1] == 4 and len(X) == len(train) == sum(len(w) + 1 for w in data.splits[0])
    assert train.ids.dtype == torch.uint8  # held once, one byte per character


def test_train_batches_are_reproducible_and_differ_by_rank():
    X, Y = torch.arange(1000).view(-1, 1), torch.arange(1000)
    loader = TrainBatches(TensorDataset(X, Y), batch_size=32, steps=10, epoch_steps=95, seed=1, rank=0)
    first = list(loader)
    assert len(first) == len(loader) == 10
    assert [len(y) for _, y in first] == [10] * 9 + [5]  # 95 SGD steps, the last batch short
    assert first[0][1].shape == (10, 1, 32)  # (steps, mini-batches per step, batch_size)
    again = TrainBatches(TensorDataset(X, Y), batch_size=32, steps=10, epoch_steps=95, seed=1, rank=0)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other_rank = TrainBatches(TensorDataset(X, Y), batch_size=32, steps=10, epoch_steps=95, seed=1, rank=1)
    assert not torch.equal(next(iter(other_rank))[1], first[0][1])
    second_epoch = list(loader)
    assert not torch.equal(second_epoch[0][1], first[0][1])


def test_train_batches_resume_where_they_stopped():
    X, Y = torch.arange(1000).view(-1, 1), torch.arange(1000)

    def make():
        return TrainBatches(TensorDataset(X, Y), batch_size=8, steps=5, epoch_steps=30, seed=3, rank=0)

    reference = make()
    expected = list(reference) + list(reference)  # two epochs
    interrupted = make()
    iterator = iter(interrupted)
    seen = [next(iterator) for _ in range(4)]
    state = interrupted.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(seen + rest, expected))
    assert len(seen + rest) == len(expected)


def test_eval_batches_cover_a_split_exactly_across_processes():
    X, Y = torch.arange(103).view(-1, 1), torch.arange(103)
    seen = []
    for rank in range(2):
        for _, y in EvalBatches(TensorDataset(X, Y), batch_size=20, rank=rank, world_size=2):
            seen += y.tolist()
    assert sorted(seen) == list(range(103))
