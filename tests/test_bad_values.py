"""Values that are not what they look like: word lists in another encoding or with control characters, sample's
temperature and seed out of range, a WaveNet checkpoint evaluated with another block_size.

Errors go through the CLI in-process (`makemore.cli.main`), as in tests/test_errors.py: one line,
`makemore: error: ...`, naming the file and line or the option and its value.
"""

import random
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import cli_error, small_run_args

from makemore.cli import main, run_cli
from makemore.formats.words import read_words
from makemore.sampling import scaled

# main(args) inside pytest: Lightning warns that sys.argv holds pytest's own arguments.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter:UserWarning")


def made_up_words(n: int = 60) -> list[str]:
    rng = random.Random(0)
    return ["".join(rng.choice("abcdeilmno") for _ in range(rng.randint(3, 6))) for _ in range(n)]


def fit_args(words: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", *small_run_args(words, root, max_steps=20, data__val_every_n_steps="10"), *extra]


def one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


# --- word lists: text that is not a UTF-8 word list ------------------------------------------------------


@pytest.mark.parametrize("encoding, name, column", [("utf-16-le", "UTF-16LE", 2), ("utf-16-be", "UTF-16BE", 1)])
def test_utf16_without_byte_order_mark_is_refused_as_not_utf8(tmp_path, encoding, name, column):
    """ASCII in UTF-16 decodes as UTF-8 with a NUL after (or before) every character: refused on line 1."""
    path = tmp_path / "utf16.txt"
    words = made_up_words()
    path.write_bytes("\n".join(words).encode(encoding))
    message = cli_error(
        fit_args(path, tmp_path),
        re.escape(f"{path}:1: the word ")
        + r"'(\\x00)?"
        + re.escape(words[0][0] + "\\x00")
        + r".*"
        + re.escape(f"' contains the control character '\\x00' (U+0000) at column {column}"),
    )
    one_line(message)
    assert f"it looks like {name} text, convert the file to UTF-8 (for example iconv -f {name} -t UTF-8)" in message


def test_utf16_with_letters_beyond_ascii_is_refused_naming_utf16(tmp_path):
    """'ë' in UTF-16LE is the byte 0xeb then NUL: not UTF-8 at all, and the message says what it looks like."""
    path = tmp_path / "utf16.txt"
    path.write_bytes("\n".join(["anna", "bob", "zoë", *made_up_words()]).encode("utf-16-le"))
    message = cli_error(fit_args(path, tmp_path), re.escape(f"{path}:3: not valid UTF-8 (byte 0xeb)"))
    assert "it looks like UTF-16LE text" in one_line(message)


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16"), ("utf-32", "UTF-32")])
def test_utf16_or_utf32_with_byte_order_mark_is_named(tmp_path, encoding, name):
    path = tmp_path / "wide.txt"
    path.write_bytes("\n".join(made_up_words()).encode(encoding))
    message = cli_error(fit_args(path, tmp_path), re.escape(f"{path}:1: not valid UTF-8 (byte "))
    assert f"it starts with a {name} byte order mark: convert the file to UTF-8" in one_line(message)


@pytest.mark.parametrize(
    "char",
    ["\x00", "\t", "\x1b", "\x1f", "\x7f", "\x9b"],
    ids=["NUL", "tab", "escape", "unit-separator", "delete", "C1-CSI"],
)
def test_control_character_inside_a_word_names_file_line_and_character(tmp_path, char):
    path = tmp_path / "words.txt"
    word = f"jo{char}anna"
    path.write_text("\n".join(["anna", "bob", f"  {word}  ", *made_up_words()]) + "\n", encoding="utf-8")
    message = cli_error(
        fit_args(path, tmp_path),
        re.escape(
            f"{path}:3: the word {word!r} contains the control character {char!r} (U+{ord(char):04X}) at column 5;"
            " words may not contain control characters"
        ),
    )
    one_line(message)
    if char == "\x00":  # NUL in ASCII text, not alternating: not UTF-16, but still said to be another encoding
        assert "NUL bytes come from another encoding (UTF-16, UTF-32) or a binary file" in message
    else:
        assert "NUL" not in message


def test_line_numbers_count_lines_as_read_words_splits_them(tmp_path):
    """Old Mac line ends (\\r alone) are lines both for the words and for the line of a byte that is not UTF-8."""
    path = tmp_path / "mac.txt"
    path.write_bytes(b"anna\rbob\rz\xebe\r")
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}:3: not valid UTF-8 (byte 0xeb)"))
    path.write_bytes(b"anna\rbob\rjo\x1banna\r")
    cli_error(fit_args(path, tmp_path), re.escape(f"{path}:3: the word 'jo\\x1banna' contains"))


def test_what_was_read_before_is_still_read(tmp_path):
    """Blank lines, \\r\\n, a UTF-8 byte order mark, surrounding whitespace (tabs included) and every line break
    str.splitlines knows are accepted as before; spaces inside a word stay part of it."""
    path = tmp_path / "words.txt"
    path.write_bytes(
        b"\xef\xbb\xbfanna\r\n\r\n\t bob\t \r\n"  # BOM, Windows line ends, a blank line, tabs around a word
        b"carl\rdora\x0beve\x0cfred\x1cgus\x1dhal\x1eida\xc2\x85jan\xe2\x80\xa8kim\xe2\x80\xa9"  # line breaks
        b"\x1flea\x1f\nmary ann\n\n"  # the unit separator is whitespace; a space inside a word
    )
    words = read_words(path)
    assert words == "anna bob carl dora eve fred gus hal ida jan kim lea".split() + ["mary ann"]
    assert not any(re.search("[\x00-\x1f\x7f-\x9f]", word) for word in words)


# --- sample: temperature and seed --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """The last checkpoint of one tiny fit."""
    root = tmp_path_factory.mktemp("fit")
    words = root / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    main(fit_args(words, root))
    path = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return str(path)


def sampled(capsys, ckpt: str, *options: str) -> list[str]:
    capsys.readouterr()
    main(["sample", "--ckpt_path", ckpt, "--num_samples", "8", *options])
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    "value, shown",
    [
        ("inf", "inf"),  # jsonargparse reads these as text, not numbers: once an empty message
        ("nan", "nan"),
        ("=-inf", "-inf"),
        ("Infinity", "Infinity"),
        (".inf", "inf"),  # YAML's infinity: a float that reaches the check
        ("1e400", "inf"),
        (".nan", "nan"),
        ("0", "0.0"),
        ("-1", "-1.0"),
        ("1e-400", "0.0"),  # below the smallest float: 0
    ],
)
def test_temperature_must_be_a_finite_number_above_0(ckpt, value, shown):
    args = ["sample", "--ckpt_path", ckpt] + (
        ["--temperature" + value] if value[0] == "=" else ["--temperature", value]
    )
    message = cli_error(
        args, r"(sample: )?--temperature must be (a finite number|above 0 and finite), got " + re.escape(shown)
    )
    one_line(message)


@pytest.mark.parametrize("temperature", ["1e-300", "1e-40", "5e-324"])
def test_a_tiny_temperature_draws_the_most_likely_name(ckpt, capsys, temperature):
    """Dividing float32 logits by these overflowed and softmax gave nan (a traceback); now it is greedy."""
    greedy = sampled(capsys, ckpt, "--top_k", "1", "--seed", "1")
    assert len(greedy) == 8 and len(set(greedy)) == 1
    assert sampled(capsys, ckpt, "--temperature", temperature, "--seed", "2") == greedy


def test_scaled_logits_are_never_nan():
    logits = torch.tensor([[2.0, 1.0, -30.0, 2.0], [0.5, float("-inf"), 0.25, 0.0]])  # a tie, a top_k mask
    for temperature in (1.0, 1e-3, 1e-40, 1e-300, 5e-324):
        probs = torch.softmax(scaled(logits, temperature), dim=-1)
        assert not probs.isnan().any()
        assert torch.equal(probs.argmax(dim=-1), torch.tensor([0, 0]))
    assert torch.equal(torch.softmax(scaled(logits, 1e-300), -1)[0], torch.tensor([0.5, 0.0, 0.0, 0.5]))
    assert torch.allclose(torch.softmax(scaled(logits, 0.7), -1), torch.softmax(logits / 0.7, -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_scaled_logits_give_the_probabilities_of_the_shift_and_divide(dtype):
    """The probabilities the draws use are softmax(where(shifted < 0, shifted / temperature, 0)) to the last bit, for
    temperatures that underflow, ties, masked (-inf) and nan logits (a row with one is uniform)."""
    generator = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.7, 1.3, 1e-3, 1e-40, 1e-300, 5e-324, 1e30):
        logits = torch.randn(4, 66, generator=generator) * 5
        logits[0, 3], logits[1], logits[2, 5] = float("-inf"), logits[1, 0], float("nan")
        logits = logits.to(dtype)
        shifted = logits - logits.amax(dim=-1, keepdim=True)
        expected = torch.softmax(torch.where(shifted < 0, shifted / temperature, 0.0), dim=-1)
        assert torch.equal(torch.softmax(scaled(logits, temperature), dim=-1), expected), temperature
    assert torch.equal(expected[2], torch.full((66,), 1 / 66, dtype=dtype))


@pytest.mark.parametrize("seed", [10**23, 2**64, -(2**63) - 1])
def test_seed_outside_torchs_range_is_one_line(ckpt, seed):
    message = cli_error(
        ["sample", "--ckpt_path", ckpt, "--seed", str(seed)],
        re.escape(f"--seed must be an integer from -2**63 to 2**64 - 1 (torch's generator seeds), got {seed}"),
    )
    one_line(message)


def test_seeds_at_the_ends_of_the_range_sample(ckpt, capsys):
    assert len(sampled(capsys, ckpt, "--seed", str(2**64 - 1))) == 8
    assert len(sampled(capsys, ckpt, "--seed", str(-(2**63)))) == 8
    assert sampled(capsys, ckpt, "--seed", "-1") == sampled(capsys, ckpt, "--seed", str(2**64 - 1))  # torch's wrap


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--num_samples", "abc", "expects an integer or null, got abc"),
        ("--seed", "1.5", "expects an integer, got 1.5"),
        ("--top_k", "1.5", "expects an integer or null, got 1.5"),
        ("--temperature", "warm", "expects a number, got warm"),
        ("--log_prob", "maybe", "expects true or false, got maybe"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_option_and_the_value(ckpt, option, value, expected):
    """jsonargparse's message spans lines; only its first, 'Parser key "X":', used to be shown."""
    message = cli_error(["sample", "--ckpt_path", ckpt, option, value], re.escape(f"sample: {option} {expected}"))
    one_line(message)


# --- a WaveNet checkpoint evaluated with another block_size ------------------------------------------------


@pytest.fixture(scope="module")
def wavenet_ckpt(tmp_path_factory) -> dict:
    """A tiny WaveNet (block_size 4: two levels of pairs) fitted for 20 steps."""
    root = tmp_path_factory.mktemp("wavenet")
    words = root / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    main(
        fit_args(
            words,
            root,
            "--model.net",
            "makemore.models.WaveNet",
            "--model.net.n_embd",
            "4",
            "--model.net.n_hidden",
            "8",
            "--data.block_size",
            "4",
        )  # fmt: skip
    )
    path = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return {"words": words, "ckpt": path}


@pytest.mark.parametrize("subcommand", ["test", "validate"])
@pytest.mark.parametrize(
    "block_size",
    [
        "8",  # a power of 2: the WaveNet is built, and the checkpoint's check names the difference
        "3",  # not one a WaveNet takes: the checkpoint's block_size is named before the network is built
    ],
)
def test_wavenet_checkpoint_with_another_block_size_names_the_checkpoints(
    wavenet_ckpt, tmp_path, subcommand, block_size
):
    ckpt = wavenet_ckpt["ckpt"]
    args = [
        subcommand,
        "--data.path", str(wavenet_ckpt["words"]),
        "--data.block_size", block_size,
        "--ckpt_path", str(ckpt),
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false",
        "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    message = cli_error(
        args,
        re.escape(f"{ckpt}: the checkpoint was trained with data.block_size 4, but this run has {block_size}"),
    )
    assert "power of" not in one_line(message)


# --- settings out of range: one line before any work (no run folder, no data read) -------------------------

COSINE = ["--model.lr_scheduler", "torch.optim.lr_scheduler.CosineAnnealingLR"]


@pytest.mark.parametrize(
    "subcommand, args, message",
    [
        # torch divides by T_max at the first SGD step, not when the schedule is built
        ("fit", [*COSINE, "--model.lr_scheduler.T_max", "0"], "model.lr_scheduler.init_args.T_max=0: integer modulo"),
        (
            "fit",
            ["--model.lr_scheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"],
            r"model.lr_scheduler \(torch.optim.lr_scheduler.ReduceLROnPlateau\): .* missing 1 required positional"
            " argument: 'metrics'",
        ),
        ("lr_find", ["--num_training", "0"], "num_training: not of type PositiveInt: 0 does not conform"),
        ("lr_find", ["--min_lr", "0"], "min_lr: not of type PositiveFloat: 0 does not conform"),
        ("lr_find", ["--min_lr", "-1"], "min_lr: not of type PositiveFloat: -1 does not conform"),
        ("lr_find", ["--max_lr", "0"], "max_lr: not of type PositiveFloat: 0 does not conform"),
        (
            "lr_find",
            ["--min_lr", "1", "--max_lr", "0.001"],
            re.escape(
                "--min_lr 1.0 must be above 0 and below --max_lr 0.001: the sweep rises from the one to the other"
            ),
        ),
        (
            "lr_find",
            ["--num_training", "13"],
            re.escape("--num_training 13 is too short a sweep to suggest a rate:") + ".* give at least 14$",
        ),
        ("fit", ["--num_threads", "0"], "num_threads: not of type PositiveInt: 0 does not conform"),
        ("lr_find", ["--num_threads", "-2"], "num_threads: not of type PositiveInt: -2 does not conform"),
        ("fit", ["--trainer.val_check_interval", "0"], r"trainer.val_check_interval 0 cannot work per SGD step"),
        ("fit", ["--trainer.log_every_n_steps", "0"], r"trainer.log_every_n_steps must be an integer of at least 1"),
        ("lr_find", ["--trainer.log_every_n_steps", "-3"], r"trainer.log_every_n_steps must be .* got -3$"),
        ("fit", ["--trainer.check_val_every_n_epoch", "0"], r"trainer.check_val_every_n_epoch must be an integer"),
        # Lightning's own checks, when it builds the trainer: one line, and the run folder claimed for it goes
        ("fit", ["--trainer.max_steps", "-5"], r"`max_steps` must be a non-negative integer or -1"),
        ("fit", ["--trainer.limit_train_batches", "-1"], r"trainer.limit_train_batches -1.0 cannot work per SGD step"),
    ],
)
def test_a_value_out_of_range_is_one_line_before_any_work(tmp_path, subcommand, args, message):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    one_line(cli_error([subcommand, *small_run_args(words, tmp_path, max_steps=20), *args], message))
    assert not (tmp_path / "lightning_logs").exists() or not list((tmp_path / "lightning_logs").iterdir())


def test_a_value_out_of_range_is_refused_before_the_data_is_read(tmp_path):
    """The word list is not there: the range is named, not the file."""
    args = small_run_args(tmp_path / "missing.txt", tmp_path, max_steps=20)
    cli_error(["fit", *args, *COSINE, "--model.lr_scheduler.T_max", "0"], "model.lr_scheduler.init_args.T_max=0")
    cli_error(["lr_find", *args, "--min_lr", "1", "--max_lr", "0.5"], "--min_lr 1.0 must be above 0 and below")
    assert not (tmp_path / "lightning_logs").exists()


# --- accepted in silence: now one line, an error or what happens -------------------------------------------


def said(caplog, start: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith(start)]


def test_a_distill_weight_without_a_teacher_is_said_once(tmp_path, caplog):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    main(fit_args(words, tmp_path, "--model.distill_weight", "0.9"))
    assert said(caplog, "makemore: model.distill_weight") == [
        "makemore: model.distill_weight 0.9 does nothing without model.teacher: the fit minimises the cross-entropy"
        " with the targets alone"
    ]


def test_swa_that_starts_too_late_to_average_says_so(tmp_path, caplog):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    swa = ["--trainer.callbacks+=makemore.callbacks.SWAWeightAveraging", "--trainer.callbacks.start", "20"]
    main(fit_args(words, tmp_path, *swa))  # max_steps 20: step 20 alone is no average
    assert said(caplog, "makemore: SWAWeightAveraging averages nothing") == [
        "makemore: SWAWeightAveraging averages nothing: from step 20 (start 20) it would add a step every 1, and the"
        " fit ends at trainer.max_steps (20) first; the weights are the trained ones"
    ]
    caplog.clear()
    main(fit_args(words, tmp_path, swa[0], "--trainer.callbacks.start", "19"))  # steps 19 and 20: averaged
    assert not said(caplog, "makemore: SWAWeightAveraging averages nothing")


def test_a_sweep_that_diverges_before_it_can_suggest_says_why(tmp_path, caplog, capsys):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    args = ["--min_lr", "100", "--max_lr", "1e6", "--num_training", "30"]
    main(["lr_find", *small_run_args(words, tmp_path), *args])
    assert "suggested learning rate" not in capsys.readouterr().out
    (message,) = said(caplog, "makemore: no suggested learning rate")
    assert "fewer than the 3 a slope needs (the loss diverged early: lower the sweep's max_lr)" in message


@pytest.mark.parametrize("share", ["0.5", "0.99", "2"])
def test_fit_with_a_share_of_the_val_split_is_refused_before_any_work(tmp_path, share):
    """Its scores are val_loss_partial, so the best checkpoint's val_loss was missing: Lightning stopped the fit at its
    first validation."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    message = cli_error(
        fit_args(words, tmp_path, "--trainer.limit_val_batches", share, "--data.eval_batch_size", "10"),
        re.escape(f"trainer.limit_val_batches {float(share)}: fit validates the whole val split (1.0), or none with 0"),
    )
    one_line(message)
    assert not (tmp_path / "lightning_logs").exists()


def test_max_new_chars_on_a_word_lists_checkpoint_is_refused(ckpt):
    message = cli_error(
        ["sample", "--ckpt_path", ckpt, "--max_new_chars", "40"],
        re.escape(f"--max_new_chars: {ckpt} was trained on a word list: it samples names (--max_length caps a name)"),
    )
    one_line(message)


def test_best_is_the_runs_own_file_never_one_of_the_working_directory(tmp_path, monkeypatch):
    """A run fitted with a relative root records its best checkpoint relative to that working directory; from
    another one holding a copy of the run, `best` of the root given took the copy's file."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    words = run / "words.txt"
    words.write_text("\n".join(made_up_words()) + "\n")
    monkeypatch.chdir(run)
    main(["fit", *small_run_args(words, Path("."), max_steps=20, data__val_every_n_steps="10")])
    shutil.copytree(run, elsewhere)
    monkeypatch.chdir(elsewhere)
    args = ["validate", *small_run_args(words, run), "--ckpt_path", "best"]
    cli = run_cli(args)
    (best,) = (run / "lightning_logs" / "version_0" / "checkpoints").glob("step=*.ckpt")
    assert Path(cli.trainer.ckpt_path) == best
    best.unlink()
    cli_error(args, re.escape(f"{best}: the newest run's best checkpoint is not there any more; use --ckpt_path last"))
    assert (elsewhere / best.relative_to(run)).is_file()
