"""The command line `makemore`: fit, validate, test and lr_find through Lightning's CLI, and `sample`.

This module imports no Lightning (nor torch until `sample` needs it): `makemore --help` answers at once and
`makemore sample` starts in about the time torch takes to import. The other subcommands load
makemore.lightning_cli.
"""

import difflib
import sys
from typing import Any, Optional

from makemore.errors import ConfigError, MakemoreError

SUBCOMMANDS = {
    "fit": "train a model: the lecture's MLP and schedule by default; --config configs/<name>.yaml for others",
    "validate": "val_loss of a checkpoint on the whole validation split (--ckpt_path FILE, best or last)",
    "test": "test_loss of a checkpoint on the whole test split (--ckpt_path FILE, best or last)",
    "lr_find": "sweep the learning rate, print a suggestion, save the loss-vs-rate plot",
    "sample": "print names drawn from a checkpoint (needs nothing but the checkpoint)",
}

OVERVIEW = (
    "usage: makemore {"
    + ",".join(SUBCOMMANDS)
    + "} [options]\n\n"
    + (
        "Character-level language models with PyTorch Lightning (the makemore lectures).\n\nsubcommands:\n"
        + "".join(f"  {name:<9} {text}\n" for name, text in SUBCOMMANDS.items())
        + "\nOptions of each: makemore <subcommand> --help. Runs go to lightning_logs/version_N;"
        " watch them with tensorboard --logdir lightning_logs."
    )
)


def sample(ckpt_path: str, num_samples: int = 20, seed: int = 42, device: str = "cpu") -> list[str]:
    """Print names drawn from a trained model, one per line; needs only the checkpoint.

    Args:
        ckpt_path: a checkpoint written by `fit` (for example lightning_logs/version_0/checkpoints/last.ckpt),
            or best or last: that checkpoint of the newest run in ./lightning_logs.
        num_samples: how many names to draw.
        seed: seed of the sampling generator; the same seed gives the same names.
        device: where to run the model (cpu or cuda).
    """
    import torch

    from makemore.checkpoint import load_network, named_checkpoint
    from makemore.sampling import sample_words
    from makemore.text import Vocabulary

    if num_samples < 1:
        raise ConfigError(f"--num_samples must be at least 1, got {num_samples}")
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if kind != "cpu" and not getattr(torch, kind).is_available():
        raise ConfigError(f"--device {device}: torch sees no {kind} device on this machine")
    if ckpt_path in ("best", "last"):
        ckpt_path = str(named_checkpoint(ckpt_path))
        print(f"makemore: --ckpt_path: {ckpt_path}", file=sys.stderr)
    net, hparams = load_network(ckpt_path, map_location=device)
    vocabulary = Vocabulary(hparams["vocab"])
    generator = torch.Generator(device).manual_seed(seed)
    names = sample_words(net, vocabulary, hparams["block_size"], num_samples, hparams["max_sample_length"], generator)
    for name in names:
        print(name)
    return names


def run_sample(argv: list[str]) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="makemore sample", description=sample.__doc__.splitlines()[0], exit_on_error=False)
    parser.add_function_arguments(sample)
    try:
        options = parser.parse_args(argv)
    except Exception as err:  # jsonargparse's parse errors: one line, as every other makemore error
        raise ConfigError(f"sample: {err}".splitlines()[0]) from None
    sample(**options.as_dict())


def main(args: Optional[list[str]] = None) -> Optional[Any]:
    """Run the command line; `args` defaults to sys.argv[1:] (tests pass their own). Returns the LightningCLI."""
    argv = sys.argv[1:] if args is None else list(args)
    command = argv[0] if argv else None
    if command in (None, "-h", "--help"):
        print(OVERVIEW)
        if command is None:
            sys.exit(2)
        return None
    try:
        if command not in SUBCOMMANDS:
            close = difflib.get_close_matches(command, SUBCOMMANDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown subcommand {command!r}{hint}; choose from {', '.join(SUBCOMMANDS)}")
        if command == "sample":
            run_sample(argv[1:])
            return None
        from makemore.lightning_cli import run

        return run(args)  # None: Lightning reads sys.argv itself
    except MakemoreError as err:
        sys.exit(f"makemore: error: {err}")
