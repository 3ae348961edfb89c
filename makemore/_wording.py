"""Every reading of another library's message wording, in one place (as makemore._compat holds the private names).

makemore turns jsonargparse's, torch's and Lightning's messages into one line naming the user's option, and silences
what a user cannot act on; each depends on the wording of the installed release. tests/test_wording.py makes each
message with the installed libraries and fails naming the wording an upgrade changed.
"""

import pickle
import re
from typing import Any, Optional

# ----------------------------------------------------------------------------------------------------------------
# What Lightning and torch print that a makemore user cannot act on, silenced by its exact text (not by category,
# so that anything new still shows).

# Lines of Lightning's loggers, by how they start.
NOISE = (
    "💡 Tip: For seamless cloud",  # advertisements for Lightning's services
    "The following callbacks returned in `LightningModule.configure_callbacks` will override",  # the step bar
)
# Warnings, by a regular expression of their text.
SILENCED = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning on torch 2.13
    # Testing or resuming a checkpoint in a new run folder: its callbacks' paths are from the old one, as they should be.
    r"The dirpath has changed from .* won't be reloaded",
    # MakemoreCLI.parse_arguments parses the command line without --print_config first, given as a list.
    r"LightningCLI's args parameter is intended to run from within Python",
    # Under DDP Lightning recommends sync_dist=True for each tensor logged per epoch. MakemoreModule._log_split's need
    # none: {val,test}_{loss,bpc,perplexity}[_partial][_other_split] come from MeanMetric.compute(), already the exact
    # example-weighted mean over all processes (a sync_dist mean of it again would change nothing), and `step` is the
    # same on every process.
    r"It is recommended to use `self\.log\('(step|(val|test)_(loss|bpc|perplexity)(_partial)?(_other_split)?)', ",
    # Lightning compares trainer.log_every_n_steps with an epoch's batches; makemore counts it in SGD steps and logs
    # train_loss itself (MakemoreModule.log_train_loss), at that interval whatever the batches.
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


# ----------------------------------------------------------------------------------------------------------------
# jsonargparse's parse errors.

# What jsonargparse's "Expected a <class 'X'>" means on the command line.
KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "NoneType": "null"}


def function_parse_error(message: str) -> str:
    """jsonargparse's parse error of a function's arguments (`makemore sample`, `search`) in one line; a value of the
    wrong type as `--option expects ..., got VALUE`."""
    key = re.match(r'Parser key "([^"]+)":', message)
    value = re.search(r"^\s*(?:Got|Given) value: (.*)$|\. Got value: (.*)$", message, re.MULTILINE)
    kinds = [KINDS.get(name, name) for name in dict.fromkeys(re.findall(r"Expected a <class '(\w+)'>", message))]
    if key and value and kinds:
        given = value.group(1) if value.group(1) is not None else value.group(2)
        if "a number" in kinds and re.fullmatch(r"[+-]?(inf|infinity|nan)", given.strip(), re.IGNORECASE):
            return f"--{key.group(1)} must be a finite number, got {given}"
        return f"--{key.group(1)} expects {' or '.join(kinds)}, got {given}"
    first = message.splitlines()[0] if message.strip() else message
    return first if not first.rstrip().endswith(":") else " ".join(message.split())


def cli_parse_error(message: str) -> tuple[str, Optional[str]]:
    """jsonargparse's parse error of Lightning's CLI in one line, its nested 'Parser key "model.net": Parser key
    "n_hidden": ...' as the option's name (model.net.n_hidden: ...), and the unrecognised option of a typo, if any
    (for the closest option to suggest)."""
    message = " ".join(str(message).split())
    keys = re.match(r'((?:Parser key "[\w.]+": )+)(.*)', message)
    if keys:
        message = ".".join(re.findall(r'Parser key "([\w.]+)"', keys.group(1))) + ": " + keys.group(2)
        message = re.sub(r"^([\w.]+): (\w+): ", r"\1.\2: ", message)  # 'model.net: n_hidden: ...'
        message = message.replace(": Not of type ", ": not of type ")
        # an Optional[PositiveInt] (--num_threads): the restriction that failed, as for a plain PositiveInt
        union = re.match(
            r"([\w.]+): Does not validate against any of the Union subtypes .*? Errors: - Not of type (\w+): (.*?)"
            r" - .* Given value: (.*)$",
            message,
        )
        if union:
            key, kind, reason, value = union.groups()
            message = f"{key}: not of type {kind}: {value} {reason}"
    typo = re.search(r"unrecognized arguments: (--[\w.]+)", message, re.IGNORECASE)
    return message, typo.group(1) if typo else None


# ----------------------------------------------------------------------------------------------------------------
# torch's errors.


def unsafe_global(err: Exception) -> Optional[str]:
    """The class or function a checkpoint would import, from torch's refusal to unpickle it with weights_only=True
    ("... GLOBAL module.name was not an allowed global ..."); None for any other error."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
    return found.group(1) if found else None


def named_options(reason: str, options: dict[str, Any]) -> list[str]:
    """The options (dotted names) whose argument torch's `reason` for refusing a class's arguments names: as it is
    spelt, in words ("learning rate" for lr's option learning_rate) or in the singular ("beta parameter")."""
    spellings = {
        key: {name, name.replace("_", " "), name.removesuffix("s")}
        for key in options
        for name in [key.rsplit(".", 1)[-1]]
    }
    return [key for key in options if any(re.search(rf"\b{w}\b", reason) for w in spellings[key])]


def out_of_memory(reason: str) -> Optional[str]:
    """How much an allocation torch could not make asked for (" (1.5 GiB asked for)", or "" when it does not say),
    or None when `reason` is not a lack of memory."""
    if "can't allocate memory" not in reason and "out of memory" not in reason:
        return None
    asked = re.search(r"allocate (\d+) bytes", reason)
    return f" ({int(asked.group(1)) / 2**30:,.1f} GiB asked for)" if asked else ""
