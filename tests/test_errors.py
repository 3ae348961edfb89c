"""Bad input: one clear message naming the file (and line), no traceback, and nothing the user had overwritten.

CLI cases call `makemore.cli.main` in-process and expect SystemExit("makemore: error: ..."); two run the
real `python -m makemore` to check that stderr holds the message and no traceback.
"""

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_error

from makemore.cli import main
from makemore.data import CharDataModule
from makemore.errors import CheckpointError
from makemore.formats.words import read_words
from makemore.module import load_checkpoint

# main(args) inside pytest: Lightning warns that sys.argv holds pytest's own arguments.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter:UserWarning")


def write_words(path: Path, n: int = 60, extra: tuple[str, ...] = ()) -> Path:
    """n short made-up names over a 10-letter alphabet (plus `extra`), one per line."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdeilmno") for _ in range(rng.randint(3, 6))) for _ in range(n)]
    path.write_text("\n".join(words + list(extra)) + "\n")
    return path


def fit_args(words: Path, root: Path) -> list[str]:
    return [
        "fit",
        "--data.path", str(words),
        "--trainer.max_steps", "20",
        "--data.max_steps_per_batch", "10",
        "--data.val_every_n_steps", "10",
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.accelerator", "cpu",
        "--seed_everything", "0",
    ]  # fmt: skip


def eval_args(words: Path, root: Path, ckpt: Path, *extra: str) -> list[str]:
    return [
        "test",
        "--data.path", str(words),
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.accelerator", "cpu",
        "--ckpt_path", str(ckpt),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One tiny fit: its word list, root folder and last checkpoint."""
    root = tmp_path_factory.mktemp("fit")
    words = write_words(root / "words.txt")
    main(fit_args(words, root))
    ckpt = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return {"words": words, "root": root, "ckpt": ckpt}


@pytest.fixture
def words(tmp_path: Path) -> Path:
    return write_words(tmp_path / "words.txt")


# --- word lists -------------------------------------------------------------------------------------


def test_missing_word_file(tmp_path):
    path = tmp_path / "nope.txt"
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}: no such file"))


def test_directory_instead_of_word_file(tmp_path):
    cli_error(fit_args(tmp_path, tmp_path), re.escape(f"{tmp_path}: is a directory"))


def test_empty_word_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}: no words"))


def test_word_file_of_blank_lines(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("\n   \n\t\n\r\n\n")
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}: no words"))


def test_bytes_not_utf8_name_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("anna\nbob\nzoë\ncarl\n".encode("latin-1"))
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}:3: not valid UTF-8 (byte 0xeb)"))


def test_windows_line_endings_whitespace_and_bom_give_clean_words(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfanna\r\n  bob \r\n\r\n\tcarl\t\r\n")
    assert read_words(path) == ["anna", "bob", "carl"]
    many = tmp_path / "many.txt"
    many.write_bytes(b"\xef\xbb\xbf" + write_words(tmp_path / "w.txt").read_text().replace("\n", " \r\n").encode())
    assert CharDataModule(str(many)).vocab == ".abcdeilmno"


def test_reserved_token_in_a_word_names_the_line(tmp_path):
    path = tmp_path / "dots.txt"
    path.write_text("anna\nbob\nst.john\ncarl\n")
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}:3: the word 'st.john' contains '.'"))


def test_characters_outside_ascii_are_more_tokens(tmp_path):
    path = write_words(tmp_path / "words.txt", extra=("zoë", "łucja", "søren", "美咲"))
    data = CharDataModule(str(path))
    assert set("ëłøs美咲") <= set(data.vocab) and data.vocab[0] == "."
    data.setup("fit")
    assert data.vocabulary.decode(data.vocabulary.encode("łucja")) == "łucja"
    assert sum(len(data.examples[split]) for split in ("train", "val", "test")) == sum(
        len(w) + 1 for w in data.format.words
    )


def test_too_few_words_for_three_splits(tmp_path):
    path = tmp_path / "three.txt"
    path.write_text("anna\nbob\ncarl\n")
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}: 3 words give train/val/test splits of 2/0/1 words"))


@pytest.mark.parametrize(
    "train, val",
    [("-0.1", "0.1"), ("0.8", "0"), ("0.9", "0.1"), ("0.95", "0.1")],
)
def test_split_fractions_that_make_no_sense(words, tmp_path, train, val):
    args = fit_args(words, tmp_path) + ["--data.train_fraction", train, "--data.val_fraction", val]
    cli_error(args, r"data\.train_fraction .* must be positive and sum to less than 1")


@pytest.mark.parametrize("block_size", ["0", "-3"])
def test_block_size_below_one(words, tmp_path, block_size):
    args = fit_args(words, tmp_path) + ["--data.block_size", block_size]
    cli_error(args, f"data.block_size must be at least 1, got {block_size}")


def test_trainer_settings_that_contradict_each_other(words, tmp_path):
    """Lightning's own MisconfigurationException: one line, before any file is written."""
    args = fit_args(words, tmp_path / "runs") + ["--trainer.enable_checkpointing", "false"]
    message = cli_error(args, r"Trainer was configured with `enable_checkpointing=False` but found `ModelCheckpoint`")
    assert "\n" not in message
    assert not [path for path in (tmp_path / "runs").rglob("*") if path.is_file()]


# --- checkpoints --------------------------------------------------------------------------------------


def check_refused(ckpt: Path, pattern: str, trained: dict, tmp_path: Path) -> None:
    """Both `sample` and `test --ckpt_path` refuse the file with a message naming it."""
    expected = re.escape(str(ckpt)) + ": " + pattern
    cli_error(["sample", "--ckpt_path", str(ckpt)], expected)
    cli_error(eval_args(trained["words"], tmp_path, ckpt), expected)


def test_missing_checkpoint(trained, tmp_path):
    check_refused(tmp_path / "nope.ckpt", "no such checkpoint file", trained, tmp_path)


def test_truncated_checkpoint(trained, tmp_path):
    data = trained["ckpt"].read_bytes()
    ckpt = tmp_path / "half.ckpt"
    ckpt.write_bytes(data[: len(data) // 2])
    check_refused(ckpt, r"not a checkpoint \(truncated, corrupt", trained, tmp_path)


def test_plain_dict_is_not_a_makemore_checkpoint(trained, tmp_path):
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3), "epoch": 1}, ckpt)
    check_refused(ckpt, "not a makemore checkpoint", trained, tmp_path)


def test_text_file_is_not_a_checkpoint(trained, tmp_path):
    ckpt = tmp_path / "notes.ckpt"
    ckpt.write_text("these are my notes\nnot a checkpoint\n")
    check_refused(ckpt, r"not a checkpoint \(truncated, corrupt", trained, tmp_path)


def test_checkpoint_of_another_model(tmp_path):
    ckpt = tmp_path / "other.ckpt"
    torch.save(
        {
            "hyper_parameters": {
                "vocab": ".ab",
                "block_size": 3,
                "net": {"class_path": "makemore.models.MLP", "init_args": {}},
            },
            "state_dict": {"net.other.weight": torch.zeros(2)},
        },
        ckpt,
    )
    with pytest.raises(CheckpointError, match=re.escape(f"{ckpt}: not a makemore checkpoint (its weights do not fit")):
        load_checkpoint(str(ckpt))


def write_marker(path: str) -> None:
    Path(path).write_text("pwned")


class Payload:
    """Unpickling this calls exec: a stand-in for os.system that only writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize(
    "payload, name",
    [
        (lambda marker: Payload(marker), "exec"),  # code that runs on load
        (lambda marker: torch.optim.SGD, "torch.optim.sgd.SGD"),  # a class
        (lambda marker: write_marker, "write_marker"),  # a function
    ],
    ids=["reduce", "class", "function"],
)
def test_checkpoint_holding_code_is_refused(trained, tmp_path, payload, name):
    marker = tmp_path / "marker"
    real = torch.load(trained["ckpt"], weights_only=True)  # a genuine checkpoint, plus the payload
    real["hyper_parameters"]["optimizer"] = payload(marker)
    ckpt = tmp_path / "evil.ckpt"
    torch.save(real, ckpt)
    if name == "exec":  # the payload is live: loading without weights_only runs it
        torch.load(ckpt, weights_only=False)
        assert marker.exists()
        marker.unlink()
    pattern = re.escape("refused: it holds Python code (") + r"[\w.]*" + re.escape(f"{name})")
    check_refused(ckpt, pattern, trained, tmp_path)
    assert not marker.exists()


def test_testing_on_another_vocabulary(trained, tmp_path):
    other = write_words(tmp_path / "other.txt", extra=("xyz",))
    message = cli_error(
        eval_args(other, tmp_path, trained["ckpt"]),
        re.escape(f"{trained['ckpt']}: the checkpoint was trained on the vocabulary '.abcdeilmno', but the data has"),
    )
    assert "xyz" in message


def test_testing_with_another_block_size(trained, tmp_path):
    cli_error(
        eval_args(trained["words"], tmp_path, trained["ckpt"], "--data.block_size", "4"),
        re.escape(f"{trained['ckpt']}: the checkpoint was trained with data.block_size 3, but this run has 4"),
    )


# --- the real process: message on stderr, no traceback -----------------------------------------------


def test_real_process_prints_one_line_and_no_traceback(trained, tmp_path):
    marker = tmp_path / "marker"
    real = torch.load(trained["ckpt"], weights_only=True)
    real["hyper_parameters"]["optimizer"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(real, evil)
    cases = [
        (fit_args(tmp_path / "nope.txt", tmp_path), f"{tmp_path / 'nope.txt'}: no such file"),
        (eval_args(trained["words"], tmp_path, evil), f"{evil}: refused: it holds Python code"),
    ]
    for args, expected in cases:
        done = subprocess.run(
            [sys.executable, "-m", "makemore", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("makemore: error: " + expected), done.stderr
    assert not marker.exists()


# --- nothing the user had is overwritten ---------------------------------------------------------------


def test_second_fit_leaves_the_first_run_untouched(trained):
    root = trained["root"]
    first = root / "lightning_logs" / "version_0"

    def snapshot() -> dict:  # bytes and modification time: a rewrite with the same bytes still shows
        return {p.relative_to(first): (p.read_bytes(), p.stat().st_mtime_ns) for p in first.rglob("*") if p.is_file()}

    before = snapshot()
    assert any(p.suffix == ".ckpt" for p in before) and any(p.name.startswith("events.out") for p in before)
    main(fit_args(trained["words"], root))
    assert snapshot() == before
    second = root / "lightning_logs" / "version_1"
    assert (second / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("events.out") for p in second.iterdir())
