"""A folder of text files (data.format text_files): each file split by position, contexts and evaluation windows
that stay within their file, one-line errors naming the file, and a fit and sample through the CLI."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from makemore.checkpoint import read_checkpoint
from makemore.data import CharDataModule
from makemore.formats import default_path
from makemore.formats.text import EvalWindows, read_text, split_text
from tests.conftest import cli_error, small_run_args

# Slices of tiny shakespeare, of unequal lengths (the last not a multiple of any block_size used here).
LENGTHS = {"a_first.txt": 1500, "b_second.txt": 1003, "plays/c_third.txt": 1201}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three text files (one in a subfolder), plus files that are not read: a hidden one and one of another kind."""
    text = read_text(default_path("text"))
    root, start = tmp_path / "corpus", 0
    for name, length in LENGTHS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text[start : start + length], encoding="utf-8")
        start += length
    (root / ".hidden.txt").write_text("never read: hidden")
    (root / "notes.md").write_text("never read: not .txt")
    return root


def data_of(path: Path, **options) -> CharDataModule:
    return CharDataModule(str(path), format="text_files", **{"block_size": 8, "train_fraction": 0.8, **options})


def test_each_file_is_split_by_position_disjoint_complete_and_deterministic(folder):
    data = data_of(folder, val_fraction=0.1)
    texts = [read_text(folder / name) for name in sorted(LENGTHS)]
    for i, text in enumerate(texts):  # every file in every split, cut where data.format text cuts a file
        parts = [split[i] for split in data.splits]
        assert tuple(parts) == split_text(text, 0.8, 0.1) and "".join(parts) == text
    assert "\0".join(texts).count("never read") == 0 and "never read" not in data.vocab
    assert data_of(folder, val_fraction=0.1).split_fingerprint == data.split_fingerprint
    assert data.split_fingerprint["train_chars"] == sum(int(0.8 * len(t)) for t in texts)
    data.setup("fit")
    train = data.examples["train"]
    assert len(train) == data.split_fingerprint["train_chars"]
    # a context never reaches back into the file before: each file's first character sees only the start token
    first_contexts = train.contexts_at(train.starts)
    assert len(train.starts) == len(LENGTHS) and torch.all(first_contexts == 0)


def test_evaluation_windows_cover_each_character_once_within_its_file(folder):
    data = data_of(folder, val_fraction=0.2, block_size=16, eval_batch_size=64)
    data.setup("fit")
    val = data.examples["val"]
    # one process: every target once, in the split's order (distillation reads the training split so)
    assert torch.equal(torch.cat([Y.flatten() for _, Y in data.whole_split("val")]), val.ids.long())
    # three processes: together every target once; each file's part tiled by windows of its own: the windows whose
    # history (the block_size characters before their first target) is all start token are one per file
    targets, file_starts = [], 0
    for rank in range(3):
        for X, Y in EvalWindows(val, 64, rank, 3):
            targets.append(Y.flatten())
            file_starts += int((X[:, :16] == 0).all(1).sum())
    assert sorted(torch.cat(targets).tolist()) == sorted(val.ids.tolist())
    assert file_starts == len(val.starts) == len(LENGTHS)


def test_a_folder_of_one_file_gives_the_text_formats_split_and_metric(tmp_path):
    text = read_text(default_path("text"))[:4000]
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "plays.txt").write_text(text, encoding="utf-8")
    (tmp_path / "plays.txt").write_text(text, encoding="utf-8")
    folder = data_of(tmp_path / "corpus", val_fraction=0.2)
    single = CharDataModule(
        str(tmp_path / "plays.txt"), format="text", block_size=8, train_fraction=0.8, val_fraction=0.2
    )
    assert folder.vocab == single.vocab and folder.split_fingerprint == single.split_fingerprint
    folder.setup("fit"), single.setup("fit")
    for (X, Y), (X1, Y1) in zip(folder.whole_split("val"), single.whole_split("val"), strict=True):
        assert torch.equal(X, X1) and torch.equal(Y, Y1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), r"{root}: no .txt files in the folder or its subfolders"),
        (
            lambda root: (
                root.mkdir(),
                (root / "a.txt").write_text("hello\n" * 50),
                (root / "b.txt").write_bytes(b"fine\n\xff\xfe"),
            ),
            r"{root}/b.txt:2: not valid UTF-8 \(byte 0xff\)",
        ),
        (
            lambda root: (root.mkdir(), (root / "a.txt").write_text("hello\n" * 50), (root / "b.txt").write_text("")),
            r"{root}/b.txt: no text \(the file is empty or holds only whitespace\)",
        ),
        (
            lambda root: root.write_text("one file\n" * 50),
            r"{root}: not a folder; data.format text_files reads a folder of .txt files \(data.format text reads one file\)",
        ),
        (lambda root: None, r"{root}: no such folder; data.format text_files reads a folder of .txt files"),
    ],
    ids=["empty folder", "not UTF-8", "empty file", "a file", "missing"],
)
def test_errors_are_one_line_naming_the_folder_or_file(tmp_path, make, message):
    root = tmp_path / "corpus"
    make(root)
    args = ["fit", "--data.format", "text_files", "--data.path", str(root), "--trainer.default_root_dir", str(tmp_path)]
    error = cli_error([*args, "--data.block_size", "2"], message.format(root=root) + "$")
    assert "\n" not in error
    assert not (tmp_path / "lightning_logs").exists() or not any((tmp_path / "lightning_logs").iterdir())


def test_a_folder_needs_its_path(tmp_path):
    cli_error(
        ["fit", "--data.format", "text_files", "--trainer.default_root_dir", str(tmp_path)],
        r"data.path: data.format text_files reads a folder of .txt files; give its path$",
    )


def test_fit_and_sample_a_folder_through_the_cli(folder, tmp_path, run_cli):
    args = small_run_args(folder, tmp_path / "runs", max_steps=20, data__val_every_n_steps="10")
    args += ["--data.format", "text_files", "--data.block_size", "8", "--data.train_fraction", "0.8"]
    cli = run_cli("fit", *args)
    last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(str(last))
    assert checkpoint["hyper_parameters"]["data_format"] == "text_files"  # what it was trained on
    assert checkpoint["datamodule_hyper_parameters"]["format"] == "text_files"
    assert cli.trainer.callback_metrics["val_loss"].item() < torch.log(torch.tensor(len(cli.datamodule.vocab))).item()
    sample = [sys.executable, "-m", "makemore", "sample", "--ckpt_path", str(last)]
    done = subprocess.run(
        [*sample, "--prompt", "ROMEO:", "--max_new_chars", "30", "--seed", "1"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ROMEO:") and len(done.stdout) == len("ROMEO:") + 30 + 1  # a passage, and a newline
    refused = subprocess.run([*sample, "--prefix", "RO"], capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.startswith("makemore: error: --prefix: ")
    assert "trained on a text" in refused.stderr and len(refused.stderr.splitlines()) == 1
    # a checkpoint records its format by name: one this makemore does not know is one line
    checkpoint["hyper_parameters"]["data_format"] = "poems"
    torch.save(checkpoint, unknown := tmp_path / "poems.ckpt")
    refused = subprocess.run(
        [sys.executable, "-m", "makemore", "sample", "--ckpt_path", str(unknown)], capture_output=True, text=True
    )
    assert refused.returncode == 1 and refused.stderr == (
        f"makemore: error: {unknown}: trained on data.format 'poems', which this makemore does not know (words, text,"
        " text_files)\n"
    )
