"""Reading makemore checkpoints as plain data (weights_only) and rebuilding their network, without Lightning.

A checkpoint's hyperparameters name the network as `net: {class_path, init_args}`; the class is imported
by name and must be an nn.Module, called with (vocab_size, block_size, **init_args).
"""

import functools
import importlib
import inspect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Optional, Union

import torch
import torch.nn as nn

from makemore._wording import unsafe_global
from makemore.errors import CheckpointError, ConfigError

if TYPE_CHECKING:  # `makemore sample` reads checkpoints without importing Lightning
    import lightning as L


def _class_and_arguments(target: Any) -> tuple[Any, dict]:
    """(the class, its keyword arguments) of a class or of a functools.partial of one (the class may be None)."""
    if isinstance(target, functools.partial):
        classes = [arg for arg in (target.func, *target.args) if isinstance(arg, type)]
        return (classes[-1] if classes else None), dict(target.keywords)
    return target, {}


def plain_data(value: Any) -> Any:
    """`value` as plain Python data: the typed numbers of a signature (jsonargparse's PositiveInt, ...) become int
    and float, so that checkpoints load with weights_only."""
    if type(value) in (bool, int, float, str):
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (list, tuple)):
        return type(value)(plain_data(item) for item in value)
    if isinstance(value, dict):
        return {key: plain_data(item) for key, item in value.items()}
    return value


def class_config(target: Any, skip: int) -> Optional[dict]:
    """The plain-data form `{"class_path": ..., "init_args": {...}}` of a class or a partial of one, or None.

    `target` is a class, a functools.partial of one with keyword arguments (as the CLI builds from a
    class_path and init_args), or such a dict already. init_args holds every argument of the class after
    its first `skip` (the ones given at call time), with the class's defaults filled in, so the same
    settings always give the same dict.
    """
    if isinstance(target, dict):
        if not {"class_path", "init_args"} >= set(target) or "class_path" not in target:
            return None
        cls, given = target["class_path"], dict(target.get("init_args") or {})
        return {"class_path": cls, "init_args": plain_data(given)}
    cls, given = _class_and_arguments(target)
    if not isinstance(cls, type):
        return None
    try:
        parameters = list(inspect.signature(cls).parameters.values())[skip:]
    except (TypeError, ValueError):
        parameters = []
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": plain_data({**defaults, **given})}


def _is_network_class(value: Any) -> bool:
    """Whether `value` is an nn.Module class or a functools.partial of one (a network given as an option)."""
    cls = _class_and_arguments(value)[0] if isinstance(value, (type, functools.partial)) else None
    return isinstance(cls, type) and issubclass(cls, nn.Module)


def network_class_config(net: Any) -> dict:
    """The plain-data form of a network class or partial (see `class_config`); ConfigError if it is not an nn.Module.

    An option that is itself a network (makemore.models.Ensemble's member) becomes plain data the same way.
    """
    config = class_config(net, skip=2)  # (vocab_size, block_size) are given when the network is built
    if config is None or not (isinstance(net, dict) or _is_network_class(net)):
        raise ConfigError(
            f"model.net must be an nn.Module class (or a functools.partial of one with keyword arguments), got {net!r}"
        )
    for name, value in config["init_args"].items():
        if _is_network_class(value):
            config["init_args"][name] = network_class_config(value)
    return config


def import_class(class_path: str, base: type = object) -> type:
    """Import a class by its dotted path; ConfigError when it cannot be imported or is not a subclass of `base`."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"cannot import the class {class_path!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{class_path!r} is not a subclass of {base.__module__}.{base.__qualname__}")
    return cls


def bound_class(config: dict, base: type = object) -> Callable:
    """The class a `class_config` dict names (a subclass of `base`), with its init_args bound: a functools.partial."""
    return functools.partial(import_class(config["class_path"], base), **config["init_args"])


def network_builder(config: dict) -> Callable[[int, int], nn.Module]:
    """What builds the network a `network_class_config` dict describes: (vocab_size, block_size) -> nn.Module (its
    options that are networks built the same way)."""
    init_args = {
        name: network_builder(value) if isinstance(value, dict) and "class_path" in value else value
        for name, value in config["init_args"].items()
    }
    return bound_class({**config, "init_args": init_args}, nn.Module)


def read_checkpoint(
    path: str, map_location: str = "cpu", allowed: Union[str, Iterable[str], None] = (), trust_hint: str = ""
) -> dict:
    """Load a makemore checkpoint as plain data (weights_only) and pass it through the one import guard
    (`check_imports`): CheckpointError, naming the file, if it is not one or if it names something to import that is
    neither makemore's, torch's nor in `allowed`. Every path that reads a checkpoint reads it here. `trust_hint`:
    how the user names a class they trust, for the refusal (default: --allow_class)."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file") from None
    except PermissionError:
        raise CheckpointError(f"{path}: cannot read: permission denied") from None
    except Exception as err:  # torch raises many kinds for truncated or foreign files and unsafe pickles
        unsafe = unsafe_global(err)
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: it holds Python code ({unsafe}) that loading could run; makemore"
                " checkpoints hold only weights and plain data, so do not trust this file"
            ) from None
        raise CheckpointError(f"{path}: not a checkpoint (truncated, corrupt, or not written by torch.save)") from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or not {"vocab", "net"} <= hparams.keys() or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a makemore checkpoint (no makemore hyperparameters or weights)")
    check_imports(checkpoint, path, allowed, trust_hint)
    return checkpoint


# What a checkpoint may make makemore import without being told: its own classes and torch's.
IMPORTED_WITHOUT_ASKING = ("makemore.", "torch.")


def class_paths(config: Any) -> list[str]:
    """Every `class_path` in a checkpoint's hyperparameters (the network, its member networks, optimizer, schedule)."""
    if isinstance(config, dict):
        found = [config["class_path"]] if isinstance(config.get("class_path"), str) else []
        return found + [path for value in config.values() for path in class_paths(value)]
    if isinstance(config, (list, tuple)):
        return [path for value in config for path in class_paths(value)]
    return []


# A dotted Python name (`package.module.name`): what jsonargparse imports where a class or a callable is expected.
DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
# The keys under which a parser reads a class to import (Lightning's subclass mode saves `_class_path`), and those
# whose values it parses by a class's signature, where any argument typed as a callable is imported by name.
CLASS_KEYS = ("class_path", "_class_path")
ARGUMENT_KEYS = ("init_args", "dict_kwargs")
# Arguments of makemore's own classes that no parser imports anything from, by their class: a recipe's groups name
# parameters ("head.weight" reads like a dotted name); the class_paths inside them are still checked as classes.
DATA_ARGUMENTS = {"makemore.optimizers.ParameterGroups": frozenset({"groups"})}


def import_targets(config: Any, arguments: bool = False) -> list[str]:
    """Every name in a checkpoint's hyperparameters that a parser could import: each class path, and each dotted name
    among a class's arguments (a callable option such as LambdaLR's lr_lambda), at any depth."""
    if isinstance(config, dict):
        found = [config[key] for key in CLASS_KEYS if isinstance(config.get(key), str)]
        data = DATA_ARGUMENTS.get(config.get("class_path"), frozenset())
        for key, value in config.items():
            if key in ARGUMENT_KEYS and isinstance(value, dict) and data:
                found += [name for arg, item in value.items() for name in import_targets(item, arg not in data)]
            else:
                found += import_targets(value, arguments or key in ARGUMENT_KEYS)
        return found
    if isinstance(config, (list, tuple)):
        return [name for value in config for name in import_targets(value, arguments)]
    if arguments and isinstance(config, str) and DOTTED_NAME.fullmatch(config.strip()):
        return [config.strip()]
    return []


def named_classes(given: Union[str, Iterable[str], None]) -> set[str]:
    """The class paths of --allow_class: one, several, or none."""
    return {given} if isinstance(given, str) else set(given or ())


def check_imports(
    checkpoint: dict, path: str, allowed: Union[str, Iterable[str], None] = (), trust_hint: str = ""
) -> None:
    """Refuse a checkpoint that names anything to import outside makemore and torch that the user did not name
    (`allowed`: a class path or several, as --allow_class takes them): a class, or a callable among a class's
    arguments.

    Loading a checkpoint imports the names it holds (makemore rebuilding its network; jsonargparse parsing its
    hyperparameters when Lightning resumes it), and importing a module runs its code: a shared checkpoint must not
    choose which. Called by `read_checkpoint`, before anything of the checkpoint is imported.
    """
    allowed = named_classes(allowed)
    for name in import_targets(checkpoint.get("hyper_parameters")):
        if not name.startswith(IMPORTED_WITHOUT_ASKING) and name not in allowed:
            hint = trust_hint or f"name it with --allow_class {name} (or --model.net)"
            raise CheckpointError(
                f"{path}: it names {name} to import, and importing it would run its module's code; makemore imports"
                f" only its own and torch's names from a checkpoint: if you trust it, {hint}"
            )


def load_network(
    path: str, map_location: str = "cpu", allowed: Union[str, Iterable[str], None] = ()
) -> tuple[nn.Module, dict]:
    """The trained network of a checkpoint (in eval mode) and the checkpoint's hyperparameters; `allowed`: classes
    outside makemore and torch it may name (see `check_imports`)."""
    checkpoint = read_checkpoint(path, map_location, allowed)
    return network_of(checkpoint, path, map_location), checkpoint["hyper_parameters"]


def network_of(checkpoint: dict, path: str, map_location: str = "cpu") -> nn.Module:
    """The trained network (in eval mode) of a checkpoint already read by `read_checkpoint` from `path`.

    Built on the CPU without touching the global random state: its initial weights are overwritten at once, and a
    fit that loads a network (model.teacher, after a resume has restored the generator) must draw the same dropout
    masks as one that does not."""
    hparams = checkpoint["hyper_parameters"]
    try:
        with torch.random.fork_rng(devices=[]):
            net = network_builder(network_class_config(hparams["net"]))(len(hparams["vocab"]), hparams["block_size"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a makemore checkpoint (bad hyperparameters: {err})") from None
    prefix = "net."
    weights = {key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    try:
        net.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(
            f"{path}: not a makemore checkpoint (its weights do not fit its hyperparameters)"
        ) from None
    return net.to(map_location).eval()


def version_number(folder: Path) -> Optional[int]:
    """N for a run folder named version_N, else None."""
    found = re.fullmatch(r"version_(\d+)", folder.name)
    return int(found.group(1)) if found else None


def runs_with_checkpoints(root: Path) -> list[Path]:
    """The run folders root/lightning_logs/version_N that hold a last.ckpt, oldest (lowest N) first."""
    logs = root / "lightning_logs"
    runs = [path for path in logs.glob("version_*") if (path / "checkpoints" / "last.ckpt").is_file()]
    return sorted((path for path in runs if version_number(path) is not None), key=version_number)


def named_checkpoint(name: str, root: Union[str, Path] = ".", allowed: Union[str, Iterable[str], None] = ()) -> Path:
    """`last` or `best`: that checkpoint of the newest run under root/lightning_logs (the highest version_N); `allowed`:
    classes outside makemore and torch its last.ckpt may name (see `check_imports`)."""
    root = Path(root)
    runs = runs_with_checkpoints(root)
    if not runs:
        raise CheckpointError(
            f"{root.resolve() / 'lightning_logs'}: no run with a last.ckpt there (--ckpt_path {name} looks only in"
            " the trainer.default_root_dir's own lightning_logs)"
        )
    last = runs[-1] / "checkpoints" / "last.ckpt"
    if name == "last":
        return last
    states = read_checkpoint(str(last), allowed=allowed).get("callbacks") or {}
    best = [state.get("best_model_path") for state in states.values() if state.get("monitor") == "val_loss"]
    logs = (root / "lightning_logs").resolve()
    for path in filter(None, best):
        # First in the run's own checkpoints folder, by name (the run folder may have moved); then where it was
        # recorded (a resumed run keeps the best of the run it resumed, in that run's folder), a relative path read
        # from the root. Only a file of this root's runs: a path recorded relative to another working directory could
        # name another root's file.
        recorded = Path(path) if Path(path).is_absolute() else root / path
        for candidate in (last.parent / Path(path).name, recorded):
            if candidate.is_file() and candidate.resolve().is_relative_to(logs):
                return candidate
        raise CheckpointError(
            f"{last.parent / Path(path).name}: the newest run's best checkpoint is not there any more; use --ckpt_path"
            " last or a file"
        )
    raise CheckpointError(
        f"{runs[-1]}: the newest run has no best checkpoint (it never validated); use --ckpt_path last"
    )


# ----------------------------------------------------------------------------------------------------------------
# Does this checkpoint fit this run? One answer for every reader of a checkpoint.

# Settings a resumed run may change: they decide speed, logging or safety checks, not the training itself.
RESUMABLE_CHANGES = frozenset(
    {
        "num_samples",
        "max_sample_length",
        "passage_length",
        "untrained_loss",
        "max_loss_factor",
        "hand_backward",
        "path",
        "max_steps_per_batch",
        "eval_batch_size",
        "storage",
    }
)

# What a checkpoint shares with any run it is given to, and the message when it does not: the network's shape.
MUST_MATCH = {
    "vocab": "the checkpoint was trained on the vocabulary {saved!r}, but the data has {now!r}; use the data file it"
    " was trained on",
    "block_size": "the checkpoint was trained with data.block_size {saved}, but this run has {now}; use the"
    " block_size it was trained with",
}

# Why a checkpoint trained on another split is refused, for the purposes that need the run's own split.
OTHER_SPLIT = {
    "evaluate": "its scores here could count words it trained on. Use the data file, data.seed and fractions it was"
    " trained with, or pass --allow_other_split true to evaluate it anyway",
    "teacher": "it could pass validation characters into training. Train the teacher with this fit's data file,"
    " data.seed and fractions",
}


def flatten(config: Any, prefix: str) -> dict[str, Any]:
    """Nested dicts as {"prefix.a.b": value} ({"a.b": value} for an empty prefix)."""
    if not isinstance(config, dict) or not config:
        return {prefix: config}
    return {
        key: value
        for name, item in config.items()
        for key, value in flatten(item, f"{prefix}.{name}" if prefix else name).items()
    }


def differences(saved: Any, current: Any, prefix: str, skip: frozenset = frozenset()) -> list[str]:
    """'name (checkpoint X, now Y)' for each setting present in both that differs (none whose name is in `skip`)."""
    saved, current = flatten(saved, prefix), flatten(current, prefix)
    return [
        f"{key} (checkpoint {saved[key]!r}, now {current[key]!r})"
        for key in sorted(saved.keys() & current.keys())
        if saved[key] != current[key] and not skip & set(key.split("."))
    ]


def check_fits(
    saved: dict,
    run: dict,
    purpose: Literal["resume", "evaluate", "weights_from", "teacher"],
    source: str = "",
    saved_data: Optional[dict] = None,
    run_data: Optional[dict] = None,
    allow_other_split: bool = False,
) -> Optional[str]:
    """Refuse a checkpoint whose settings do not fit this run: CheckpointError, one line starting with `source`.

    Every purpose: another vocabulary or block_size (MUST_MATCH). evaluate and teacher: another
    split (a teacher's must be recorded). resume: every other model and data setting that differs, except
    RESUMABLE_CHANGES, all named at once (the data file's words are compared through the split's fingerprint).

    Args:
        saved: the checkpoint's settings, its hyper_parameters.
        run: this run's settings by the same names; only the names in both are compared.
        purpose: what the checkpoint is for: resume (the same run goes on), evaluate (validate, test),
            weights_from (a new run from its network's weights) or teacher (distillation's soft targets).
        source: the start of the message: the checkpoint's path, "PATH: ", or the option that names it.
        saved_data: the checkpoint's data settings (datamodule_hyper_parameters): resume compares them, and a
            vocabulary that differs names the data file they record.
        run_data: this run's data settings, compared with saved_data when resuming.
        allow_other_split: evaluate a checkpoint of another split instead of refusing it.

    Returns:
        None, or (evaluating on another split, allowed) the line that says so: its scores are then named apart.
    """
    for key, message in MUST_MATCH.items():
        if key in saved and key in run and saved[key] != run[key]:
            trained_on = (saved_data or {}).get("path") if key == "vocab" else None
            said = message.format(saved=saved[key], now=run[key]) + (f" ({trained_on})" if trained_on else "")
            raise CheckpointError(source + said)
    recorded, fingerprint = saved.get("split_fingerprint"), run.get("split_fingerprint")
    if purpose in OTHER_SPLIT and fingerprint and (recorded or purpose == "teacher"):  # old checkpoints: none recorded
        differ = [key for key, value in fingerprint.items() if (recorded or {}).get(key) != value]  # train_words...
        names = [name for name in ("train", "val", "test") if any(key.startswith(name) for key in differ)]
        if names and allow_other_split and purpose == "evaluate":
            return (
                f"{source}the checkpoint was trained on another split (its {'/'.join(names)} words differ): its"
                " scores are named *_other_split, apart from the run's own"
            )
        if names:
            raise CheckpointError(
                f"{source}the checkpoint was trained on another split of the words (its {'/'.join(names)} words"
                f" differ from this data's): {OTHER_SPLIT[purpose]}"
            )
    if purpose == "resume":
        found = differences(saved, run, "model", skip=RESUMABLE_CHANGES)
        if saved_data and run_data is not None:
            found += differences(saved_data, run_data, "data", skip=RESUMABLE_CHANGES)
        if found:
            raise CheckpointError(
                f"{source}resuming continues the same run, but these settings differ from the checkpoint's: "
                + ", ".join(found)
                + ". Resume with the run's own config (its config.yaml), or start a new run from the checkpoint's"
                " weights with --weights_from instead of --ckpt_path"
            )
    return None


# ----------------------------------------------------------------------------------------------------------------
# What a checkpoint holds beyond Lightning's: every process's random states (a resumed run draws the same dropout
# masks).


def attached_trainer(module: "L.LightningModule") -> "Optional[L.Trainer]":
    """The trainer a LightningModule is attached to, or None: on_load_checkpoint runs both inside a fit and when a
    checkpoint is loaded from Python, without a trainer."""
    try:
        return module.trainer
    except RuntimeError:  # Lightning's property raises when no trainer is attached
        return None


def random_states(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's random state: the CPU generator's, and the generator of the device it trains on (CUDA, MPS)."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def random_states_of_every_process(module: "L.LightningModule") -> list[dict[str, torch.Tensor]]:
    """The random states of every process of the fit (`random_states`), one dict per global rank, on the CPU; a
    collective under DDP (every process saves a checkpoint, rank 0 writes it)."""
    mine = random_states(module.device)
    trainer = attached_trainer(module)
    if trainer is None or trainer.world_size == 1:
        return [mine]
    # all_gather takes tensors on the process's device (NCCL: a GPU); the states are bytes of equal length per kind
    gathered = {kind: module.all_gather(state.to(module.device)).cpu() for kind, state in mine.items()}
    # each row its own tensor (clone): a view into the gathered storage would be saved whole, and
    # torch.set_rng_state reads a view's storage from its start (a crash)
    return [{kind: states[rank].clone() for kind, states in gathered.items()} for rank in range(trainer.world_size)]


def restore_random_states(
    saved: list[dict[str, torch.Tensor]], rank: int, world_size: int, device: torch.device
) -> Optional[str]:
    """Restore this process's random states from a checkpoint's (`random_states_of_every_process`), if it has them;
    what the run's processes cannot restore, as rank 0 can say it, or None: no state at all, a device kind the
    checkpoint did not train on, or the processes beyond those that saved it (a run resumed by more processes).
    Restores only the generators of this process's own device: a checkpoint of more GPUs than this machine has
    loads."""
    if not saved:
        return "any process"
    if rank < len(saved):
        states = {kind: state.cpu().clone() for kind, state in saved[rank].items()}  # torch's setters: whole tensors
        torch.set_rng_state(states["cpu"])
        if device.type != "cpu" and device.type not in states:
            return f"{device.type} (it was trained on {', '.join(sorted(states))})"
        if device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], device)
        elif device.type == "mps":
            torch.mps.set_rng_state(states["mps"])
    others = range(len(saved), world_size)
    if not others:
        return None
    named = f"process {others[0]}" if len(others) == 1 else f"processes {others[0]} to {others[-1]}"
    return f"{named} (it was saved by {len(saved)})"
