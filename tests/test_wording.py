"""Every message of another library that makemore reads by its wording (makemore/_wording.py) still reads so.

Each test makes the message with the installed jsonargparse, torch or Lightning and checks what makemore takes from
it: an upgrade that rewords one fails here, naming the message, before a user sees a raw traceback or noise.
"""

import inspect
import pickle
import re
from pathlib import Path
from typing import Optional

import lightning
import pytest
import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt

from makemore import _wording


class Net:
    """A class outside makemore and torch, which a checkpoint must not make makemore import."""


def raw_error(parser: ArgumentParser, args: list[str]) -> str:
    with pytest.raises(Exception) as caught:
        parser.parse_args(args)
    return str(caught.value)


def function_parser() -> ArgumentParser:
    def options(n: int = 1, k: Optional[PositiveInt] = 1) -> None:
        pass

    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(options)
    return parser


def test_jsonargparse_wrong_type_of_a_function_argument():
    message = raw_error(function_parser(), ["--n", "abc"])
    assert _wording.function_parse_error(message) == "--n expects an integer, got abc", message


def test_jsonargparse_nested_keys_union_and_typo_of_the_cli():
    from makemore.cli import main

    with pytest.raises(SystemExit) as caught:  # 'Parser key "model.net": ... Parser key "n_hidden": ...' in one line
        main(["fit", "--model.net.n_hidden", "abc"])
    assert str(caught.value).startswith("makemore: error: model.net.n_hidden: not of type PositiveInt"), caught.value
    message = raw_error(function_parser(), ["--k", "0"])  # Optional[PositiveInt]: the restriction that failed
    assert _wording.cli_parse_error(message) == (
        "k: not of type PositiveInt: 0 does not conform to restriction v>0",
        None,
    )
    message = raw_error(function_parser(), ["--nn", "3"])
    assert _wording.cli_parse_error(message)[1] == "--nn", message


def test_torch_names_the_global_an_unsafe_checkpoint_would_import(tmp_path):
    path = tmp_path / "unsafe.ckpt"
    torch.save({"net": Net()}, path)
    with pytest.raises(pickle.UnpicklingError) as caught:
        torch.load(path, weights_only=True)
    assert _wording.unsafe_global(caught.value) == f"{__name__}.Net", str(caught.value)
    assert _wording.unsafe_global(ValueError("GLOBAL x.y")) is None  # only torch's refusal to unpickle


def test_torch_names_the_argument_it_refuses():
    with pytest.raises(ValueError) as caught:
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=-1.0)
    options = {"model.learning_rate": -1.0, "model.optimizer.init_args.momentum": 0.0}
    assert _wording.named_options(str(caught.value), options) == ["model.learning_rate"], str(caught.value)
    with pytest.raises(ValueError) as caught:
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], betas=(1.5, 0.9))
    options = {"model.optimizer.init_args.betas": (1.5, 0.9), "model.learning_rate": 0.1}
    assert _wording.named_options(str(caught.value), options) == ["model.optimizer.init_args.betas"]


def test_torch_says_how_much_memory_it_could_not_allocate():
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**60, dtype=torch.uint8)
    assert _wording.out_of_memory(str(caught.value)) == f" ({2**60 / 2**30:,.1f} GiB asked for)", str(caught.value)
    assert _wording.out_of_memory("Invalid learning rate: -1.0") is None


def lightning_source() -> str:
    root = Path(inspect.getfile(lightning)).parent
    return "\n".join(path.read_text(encoding="utf-8") for path in root.rglob("*.py"))


def test_what_is_silenced_is_still_what_lightning_says():
    """Each silenced line and warning still has its text in the installed Lightning (by a fixed part of it): one that
    is gone is printed no more, or reworded, and its filter here is dead."""
    source = lightning_source()
    for line in _wording.NOISE:
        fixed = line.split("`")[0].removeprefix("💡 ").strip()
        assert fixed in source, line
    fixed_parts = [re.split(r"\\.|\.\*|\(|\\\(", pattern)[0].replace("\\", "") for pattern in _wording.SILENCED]
    for pattern, fixed in zip(_wording.SILENCED, fixed_parts):
        if "treespec" in pattern:  # torch's deprecation, raised while Lightning flattens its outputs
            continue
        assert fixed.strip() and fixed in source, pattern
