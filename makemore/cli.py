"""The command line `makemore`: fit, validate, test and lr_find through Lightning's CLI, and `sample`.

This module imports no Lightning (nor torch until `sample` needs it): `makemore --help` answers at once and
`makemore sample` starts in about the time torch takes to import. The other subcommands load
makemore.lightning_cli.
"""

import difflib
import os
import sys
from typing import TYPE_CHECKING, Any, Optional, Union

from makemore._wording import function_parse_error
from makemore.errors import ConfigError, MakemoreError

if TYPE_CHECKING:  # not imported at run time: `makemore --help` imports no torch
    import torch

    from makemore.text import Vocabulary

# The characters of a text's passage that `sample` draws after its prompt unless told.
PASSAGE_CHARS = 500
# The seeds torch.Generator.manual_seed takes (a negative one counts from 2**64).
SEEDS = (-(2**63), 2**64 - 1)

# Every subcommand, declared alike: its one-line help and what runs it, imported only when it runs. LIGHTNING: Lightning's
# CLI (makemore.lightning_cli.run: a trainer, the data and the model from a config); otherwise a function whose
# typed, documented arguments are the subcommand's options (jsonargparse).
LIGHTNING = "makemore.lightning_cli:run"
SUBCOMMANDS = {
    "fit": (
        "train a model: the lecture's MLP and schedule by default; --config configs/<name>.yaml for others",
        LIGHTNING,
    ),
    "validate": ("val_loss of a checkpoint on the whole validation split (--ckpt_path FILE, best or last)", LIGHTNING),
    "test": ("test_loss of a checkpoint on the whole test split (--ckpt_path FILE, best or last)", LIGHTNING),
    "lr_find": ("sweep the learning rate, print a suggestion, save the loss-vs-rate plot", LIGHTNING),
    "sample": (
        "print names (or a text's passage) drawn from a checkpoint (needs nothing but the checkpoint)",
        "makemore.cli:sample",
    ),
    "search": ("search hyperparameters with Optuna: --config BASE.yaml --search SPACE.yaml", "makemore.search:search"),
}

OVERVIEW = (
    "usage: makemore {"
    + ",".join(SUBCOMMANDS)
    + "} [options]\n\n"
    + (
        "Character-level language models with PyTorch Lightning (the makemore lectures).\n\nsubcommands:\n"
        + "".join(f"  {name:<9} {text}\n" for name, (text, _) in SUBCOMMANDS.items())
        + "\nOptions of each: makemore <subcommand> --help. Runs go to lightning_logs/version_N;"
        " watch them with tensorboard --logdir lightning_logs."
    )
)


def sample(
    ckpt_path: str,
    num_samples: Optional[int] = None,
    seed: int = 42,
    device: str = "cpu",
    num_threads: Optional[int] = 1,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    prefix: str = "",
    max_length: Optional[int] = None,
    log_prob: bool = False,
    novelty: bool = False,
    words: Optional[str] = None,
    allow_class: Union[str, list[str], None] = None,
    prompt: Optional[str] = None,
    max_new_chars: Optional[int] = None,
    stream: bool = False,
) -> None:
    """Print names drawn from a trained model, one per line, or a text's passage; needs only the checkpoint.

    Args:
        ckpt_path: a checkpoint written by `fit` (for example lightning_logs/version_0/checkpoints/last.ckpt),
            or best or last: that checkpoint of the newest run in ./lightning_logs.
        num_samples: how many names to draw (default 20); of a text's checkpoint, how many passages (default 1).
        seed: seed of the sampling generator; the same seed gives the same names. From -2**63 to 2**64 - 1, what
            torch.Generator.manual_seed takes.
        device: where to run the model (cpu or cuda).
        num_threads: torch's intra-op CPU threads (null: torch's default). A character at a time from a small model
            gains nothing from more, and several threads slow to a crawl when other processes share the cores.
        temperature: divides the logits before sampling: below 1 more likely names, above 1 more varied ones. Any
            finite number above 0; near 0, however small (1e-300), each character is the most likely one (as
            --top_k 1).
        top_k: draw each character from the k most likely only (null: from all).
        prefix: every name starts with these letters.
        max_length: the longest name drawn (default: the checkpoint's model.max_sample_length).
        log_prob: print each name's log-probability under the model (nats; temperature 1, all characters) beside it.
        novelty: print beside each name whether it is in the training words, in val/test or new, and a summary
            line (on stderr). Needs the word list the model was trained on: the checkpoint's data file, or --words.
        words: the word list for --novelty, when the checkpoint's data file has moved; its split must be the
            checkpoint's (checked by its fingerprint).
        allow_class: a class (or a list of them) outside makemore and torch that the checkpoint may make makemore
            import (a network of your own); a checkpoint naming another is refused before anything is imported.
        prompt: a text's checkpoint: the passage starts with these characters and continues them (a prompt longer
            than the model's block_size is read from its last block_size characters). Default: from the start.
        max_new_chars: a text's checkpoint: how many characters to draw after the prompt (default 500); they are
            printed as they are drawn.
        stream: a text's checkpoint: each character is drawn from the whole passage so far, not from its last
            block_size characters, at the cost of one character a step (a network that reads a text of any length:
            a Recurrent network, whose state carries the passage, or a Transformer with position rope, each of whose
            blocks attends to the block_size positions before). Default: the window the model was trained on.
    """
    import torch

    from makemore import formats, sampling
    from makemore.checkpoint import named_checkpoint, network_of, read_checkpoint
    from makemore.text import Vocabulary

    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--num_samples must be at least 1, got {num_samples}")
    if max_new_chars is not None and max_new_chars < 1:
        raise ConfigError(f"--max_new_chars must be at least 1, got {max_new_chars}")
    if num_threads is not None and num_threads < 1:
        raise ConfigError(f"--num_threads must be at least 1 (null: torch's default), got {num_threads}")
    if not SEEDS[0] <= seed <= SEEDS[1]:
        raise ConfigError(f"--seed must be an integer from -2**63 to 2**64 - 1 (torch's generator seeds), got {seed}")
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if kind != "cpu" and not getattr(torch, kind).is_available():
        raise ConfigError(f"--device {device}: torch sees no {kind} device on this machine")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    if ckpt_path in ("best", "last"):
        name, ckpt_path = ckpt_path, str(named_checkpoint(ckpt_path, allowed=allow_class))
        print(f"makemore: --ckpt_path {name}: {ckpt_path}", file=sys.stderr)
    checkpoint = read_checkpoint(ckpt_path, device, allow_class)
    net, hparams = network_of(checkpoint, ckpt_path, device), checkpoint["hyper_parameters"]
    vocabulary = Vocabulary(hparams["vocab"])
    generator = torch.Generator(device).manual_seed(seed)
    if formats.of_checkpoint(hparams, ckpt_path).passage:
        given = {"--prefix": prefix, "--max_length": max_length, "--log_prob": log_prob, "--novelty": novelty}
        for option, value in given.items():
            if value:
                raise ConfigError(f"{option}: {ckpt_path} was trained on a text: it samples passages (--prompt)")
        sample_passages(
            net,
            vocabulary,
            hparams["block_size"],
            num_samples or 1,
            prompt or "",
            PASSAGE_CHARS if max_new_chars is None else max_new_chars,
            generator,
            temperature,
            top_k,
            stream,
        )
        return
    if prompt is not None:
        raise ConfigError(
            f"--prompt: {ckpt_path} was trained on a word list: it samples names (--prefix starts each name)"
        )
    if max_new_chars is not None:
        raise ConfigError(
            f"--max_new_chars: {ckpt_path} was trained on a word list: it samples names (--max_length caps a name)"
        )
    if stream:
        raise ConfigError(f"--stream: {ckpt_path} was trained on a word list: it samples names, each from its start")
    max_length = hparams["max_sample_length"] if max_length is None else max_length
    try:  # the sampling options, checked before any draw
        chunks = sampling.sample_chunks(
            net, vocabulary, hparams["block_size"], num_samples or 20, max_length, generator, temperature, top_k, prefix
        )
    except ValueError as err:
        raise ConfigError(f"--{err}") from None
    classed = sampling.Novelty(training_splits(checkpoint, ckpt_path, words)) if novelty else None
    try:
        for names in chunks:  # printed as each chunk is drawn: memory holds one chunk, however many names
            columns = [names]
            if log_prob:
                log_probs = sampling.word_log_probs(net, vocabulary, hparams["block_size"], names)
                columns.append([f"{value:.4f}" for value in log_probs])
            if classed is not None:
                columns.append(classed(names))
            print("\n".join("\t".join(row) for row in zip(*columns)), flush=True)
    except BrokenPipeError:  # the reader has all it wants (`makemore sample ... | head`): stop drawing, quietly
        chunks.close()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return
    if classed is not None:  # after the names
        total = sum(classed.counts.values())
        counts = ", ".join(
            f"{count} {'in ' if name != 'new' else ''}{name} ({count / total:.0%})"
            for name, count in classed.counts.items()
        )
        print(f"makemore: {total} names: {counts}", file=sys.stderr)


def sample_passages(
    net: "torch.nn.Module",
    vocabulary: "Vocabulary",
    block_size: int,
    count: int,
    prompt: str,
    max_new_chars: int,
    generator: "torch.Generator",
    temperature: float,
    top_k: Optional[int],
    stream: bool = False,
) -> list[str]:
    """Print `count` passages of a text's model, each the prompt and its continuation, drawn as one batch (the first
    printed as it is drawn); blank lines between them."""
    from makemore.sampling import generate_passages

    try:  # the sampling options, checked before any draw
        columns = generate_passages(
            net, vocabulary, block_size, prompt, max_new_chars, count, generator, temperature, top_k, stream=stream
        )
    except ValueError as err:
        raise ConfigError(f"--{err}") from None
    print(prompt, end="", flush=True)
    drawn: list[list[str]] = [[] for _ in range(count)]
    for chars in columns:  # drawn as one batch: the first passage is printed as it is drawn, the others after it
        print(chars[0], end="", flush=True)
        for passage, char in zip(drawn, chars):
            passage.append(char)
    passages = [prompt + "".join(passage) for passage in drawn]
    for passage in passages[1:]:
        print("\n")
        print(passage, end="")
    print()
    return passages


def training_splits(checkpoint: dict, ckpt_path: str, words: Optional[str]) -> tuple[list[str], list[str], list[str]]:
    """The train/val/test words a checkpoint (read from ckpt_path) was trained on, rebuilt from its data settings and
    checked against its split's fingerprint."""
    from makemore.formats.words import Words

    data = checkpoint.get("datamodule_hyper_parameters") or {}
    saved = checkpoint["hyper_parameters"].get("split_fingerprint")
    if not data or not saved:
        raise ConfigError(f"--novelty: {ckpt_path} does not record the data it was trained on")
    word_list = Words(words or data.get("path"), 1, data["train_fraction"], data["val_fraction"], data["seed"])
    if word_list.fingerprint != saved:
        raise ConfigError(
            f"--novelty: the words of {word_list.path} do not split into the ones {ckpt_path} was trained on; give"
            " the word list it was trained on with --words"
        )
    return word_list.splits


def imported(target: str) -> Any:
    """The object a `module:name` target names, imported now."""
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def run_function(command: str, argv: list[str]) -> None:
    """A subcommand that is a function (sample, search): its arguments as options (jsonargparse), errors as one line."""
    from jsonargparse import ArgumentParser

    function = imported(SUBCOMMANDS[command][1])
    parser = ArgumentParser(
        prog=f"makemore {command}", description=function.__doc__.splitlines()[0], exit_on_error=False
    )
    parser.add_function_arguments(function)
    try:
        options = parser.parse_args(argv)
    except Exception as err:  # jsonargparse's parse errors: one line, as every other makemore error
        raise ConfigError(f"{command}: {function_parse_error(str(err))}") from None
    function(**options.as_dict())


def main(args: Optional[list[str]] = None) -> None:
    """Run the command line (what the `makemore` console script and `python -m makemore` run, through `console`);
    `args` defaults to sys.argv[1:]. Returns None after a run that succeeded; errors are SystemExit with one line.
    From Python, `run_cli` returns the LightningCLI."""
    run_cli(args)


def console() -> None:
    """The `makemore` console script and `python -m makemore`: `main`, its one-line error written whole, in one write
    (Python writes a SystemExit's message and its newline apart, and the processes of a DDP run share stderr: their
    lines could interleave)."""
    try:
        main()
    except SystemExit as exit:
        if not isinstance(exit.code, str):
            raise
        sys.stderr.flush()
        os.write(sys.stderr.fileno(), (exit.code + "\n").encode())
        raise SystemExit(1) from None


def run_cli(args: Optional[list[str]] = None) -> Optional[Any]:
    """`main`, returning the LightningCLI of fit, validate, test or lr_find (None for the other subcommands)."""
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
        if SUBCOMMANDS[command][1] != LIGHTNING:
            run_function(command, argv[1:])
            return None
        run = imported(LIGHTNING)
        ours = not process_group_running()  # a DDP run's: Lightning starts it in run()
        cli = run(args)  # None: Lightning reads sys.argv itself
        if ours:
            end_process_group()
        return cli
    except MakemoreError as err:
        sys.exit(f"makemore: error: {err}")


def process_group_running() -> bool:
    """Whether this process is in a torch.distributed process group (a DDP run's)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def end_process_group() -> None:
    """End the process group of a DDP run that has finished: join its threads while Python is still whole.

    Lightning destroys the group at exit for NCCL only. A gloo group (DDP on CPUs) left to the end of the
    interpreter keeps its worker threads (pt_gloo_runloop), its transport loop and, on rank 0, the TCPStore server
    running; a worker that drops the last reference to a finished collective's tensors while Python finalizes must
    take the GIL, Python ends the thread there, and the C++ unwind calls std::terminate: "terminate called without
    an active exception", exit status 134 after a run that succeeded (tests/test_ddp_exit.py). Called only after a
    run that returned: after an error a peer may still be inside a collective, which destroying would wait for.
    """
    import torch.distributed as dist

    if process_group_running():
        dist.destroy_process_group()
