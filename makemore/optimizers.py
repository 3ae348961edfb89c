"""Optimizer recipes as configuration: several torch optimizers, each over its own parameters, as one optimizer.

`ParameterGroups` is a torch.optim.Optimizer to the rest of makemore (the SGD step, Lightning's manual optimisation,
the learning-rate finder, the schedules, checkpoints): its `param_groups` are its optimizers' own group dicts and
its `state` theirs, so a schedule that sets a group's "lr" sets the rate that optimizer reads, and one state_dict
holds them all. A group's rate is its lr_scale x the shared rate (model.learning_rate, as the schedule and the
learning-rate finder move it), applied only while the group's optimizer steps.
"""

import fnmatch
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from typing_extensions import NotRequired, TypedDict  # Python 3.10: typing has no NotRequired

from makemore._wording import named_options, out_of_memory
from makemore.checkpoint import bound_class, class_config, import_class, network_builder, network_class_config
from makemore.errors import ConfigError, MakemoreError

# The option a recipe is given as: the start of its messages.
OPTION = "model.optimizer"
# How many of the network's parameter names a message shows, for a group that selects none.
NAMES_SHOWN = 3


class Group(TypedDict):
    """One group of a ParameterGroups recipe: which parameters, and the optimizer that trains them."""

    name: str  # in messages
    names: NotRequired[list[str]]  # patterns (fnmatch) over the network's parameter names
    ndim: NotRequired[int]  # only parameters of this many dimensions (2: the matrices)
    lr_scale: NotRequired[float]  # the group's rate is lr_scale x model.learning_rate (default 1)
    optimizer: dict  # the torch.optim class: {class_path, init_args}, init_args without lr


def selects(group: Group, name: str, parameter: torch.Tensor) -> bool:
    """Whether `group` names this parameter: its name matches one of the group's names (any name when it has none)
    and its number of dimensions is the group's ndim (any when it has none)."""
    patterns, ndim = group.get("names"), group.get("ndim")
    by_name = patterns is None or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    return by_name and (ndim is None or parameter.dim() == ndim)


def is_rest(group: Group) -> bool:
    """Whether the group selects nothing itself (no names, no ndim): it takes the parameters no other group does."""
    return group.get("names") is None and group.get("ndim") is None


def assign(named: list[tuple[str, torch.Tensor]], groups: list[Group]) -> list[list[torch.Tensor]]:
    """Each group's parameters, in the network's order; ConfigError naming the parameter and the groups for one that
    two groups select or that none does, naming the group for one that selects none."""
    rest = [i for i, group in enumerate(groups) if is_rest(group)]
    if len(rest) > 1:
        rest_names = ", ".join(repr(groups[i]["name"]) for i in rest)
        raise ConfigError(
            f"{OPTION}: the groups {rest_names} both take the rest (neither has names or ndim); give all but one of"
            " them names or ndim"
        )
    chosen: list[list[torch.Tensor]] = [[] for _ in groups]
    listed = ", ".join(repr(group["name"]) for group in groups)
    for name, parameter in named:
        found = [i for i, group in enumerate(groups) if not is_rest(group) and selects(group, name, parameter)]
        if len(found) > 1:
            both = " and ".join(repr(groups[i]["name"]) for i in found)
            raise ConfigError(
                f"{OPTION}: the parameter {name} is in the groups {both}; each parameter belongs to exactly one"
                " group: narrow their names or ndim"
            )
        if not found and not rest:
            raise ConfigError(
                f"{OPTION}: the parameter {name} ({parameter.dim()}-D) is in none of the groups ({listed}); widen"
                " a group's names or ndim, or add a group without names or ndim for the rest"
            )
        chosen[found[0] if found else rest[0]].append(parameter)
    for group, parameters in zip(groups, chosen):
        if not parameters:
            raise ConfigError(
                f"{OPTION}: the group {group['name']!r} selects no parameter of the network (names"
                f" {group.get('names')}, ndim {group.get('ndim')}); names are the network's own, as its"
                f" named_parameters() gives them ({', '.join(name for name, _ in named[:NAMES_SHOWN])}, ...)"
            )
    return chosen


def check_groups(groups: list[Group]) -> None:
    """ConfigError for a recipe that names no group, two groups alike, or a rate inside a group's optimizer."""
    if not groups:
        raise ConfigError(f"{OPTION}: ParameterGroups needs at least one group")
    names = [group["name"] for group in groups]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"{OPTION}: the group name {twice[0]!r} is used twice; each group needs its own name")
    for group in groups:
        optimizer = group["optimizer"]
        if not isinstance(optimizer.get("class_path"), str):
            raise ConfigError(
                f"{OPTION}: the group {group['name']!r} needs optimizer.class_path (a torch.optim class), got"
                f" {optimizer!r}"
            )
        if "lr" in (optimizer.get("init_args") or {}):
            raise ConfigError(
                f"{OPTION}: the group {group['name']!r} sets its optimizer's lr; set the group's lr_scale instead"
                " (its rate is lr_scale x model.learning_rate, which schedules and the learning-rate finder move)"
            )


class ParameterGroups(torch.optim.Optimizer):
    """Several torch optimizers as one, each over the parameters its group selects.

    modded-nanogpt's recipe, for one: Muon for the blocks' weight matrices, AdamW for the rest.

    Every parameter of the network must be selected by exactly one group (else one line names it and the groups,
    before any work); a group without names or ndim takes every parameter that no other group selects (at most one
    such group). Rates: each group trains at its lr_scale x the shared rate, model.learning_rate, which the schedule
    and the learning-rate finder move for every group at once, keeping their ratios (param_groups' "lr" is the
    shared rate, "lr_scale" the group's multiple).

    Args:
        params: the network's named parameters, (name, parameter) pairs (given by makemore).
        groups: the parameter groups, in YAML a list of mappings with the keys name (in messages), names (fnmatch
            patterns over the network's parameter names, as its named_parameters() gives them, such as "blocks.*" or
            "head.weight"; a parameter matches if one does; absent: any name), ndim (only parameters with this many
            dimensions, 2 for the weight matrices; absent: any), lr_scale (the group's rate is lr_scale x
            model.learning_rate; default 1) and optimizer (the group's torch.optim class: class_path and init_args,
            without lr). Example: configs/shakespeare/gpt_cpu_muon.yaml.
        lr: the shared learning rate, model.learning_rate (given by makemore).
    """

    def __init__(self, params: Iterable[tuple[str, torch.Tensor]], groups: list[Group], lr: float = 1e-3) -> None:
        named = list(params)
        if not all(isinstance(item, tuple) and len(item) == 2 for item in named):
            raise TypeError("ParameterGroups selects parameters by name: give it named_parameters()")
        check_groups(groups)
        chosen = assign(named, groups)
        super().__init__([parameter for _, parameter in named], {"lr": lr})
        self.optimizers: list[torch.optim.Optimizer] = []
        for group, parameters in zip(groups, chosen):
            config = group["optimizer"]
            config = {"class_path": config["class_path"], "init_args": dict(config.get("init_args") or {})}
            try:
                inner = bound_class(config, torch.optim.Optimizer)(parameters, lr=lr)
            except (ValueError, TypeError, RuntimeError) as err:  # torch's reason for values it rejects
                if isinstance(err, ConfigError):
                    raise
                reason = " ".join(str(err).split())
                raise ConfigError(f"{OPTION}: the group {group['name']!r} ({config['class_path']}): {reason}") from None
            for inner_group in inner.param_groups:
                inner_group["lr_scale"] = float(group.get("lr_scale", 1.0))
            inner.state = self.state  # the groups' parameters are disjoint: one state dict serves them all
            self.optimizers.append(inner)
        self.param_groups = [group for inner in self.optimizers for group in inner.param_groups]

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Step every group's optimizer, each at lr_scale x its group's rate (as it stands: schedules set it).

        Args:
            closure: recomputes the loss (Lightning's, which runs the backward); called once, before the steps.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with self.group_rates():
            for inner in self.optimizers:
                inner.step()
        return loss

    @contextmanager
    def group_rates(self) -> Iterator[None]:
        """Within it, each group's "lr" is the rate its optimizer steps at, lr_scale x the shared rate (what `step`
        applies and what a learning-rate monitor logs); after it, the shared rate, exactly as the schedule left it."""
        rates = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * group["lr_scale"]
        try:
            yield
        finally:
            for group, rate in zip(self.param_groups, rates):
                group["lr"] = rate

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what `state_dict` saved (every group's settings and every parameter's state), into this optimizer
        and each of its optimizers.

        Args:
            state_dict: a ParameterGroups state_dict of the same recipe.
        """
        super().load_state_dict(state_dict)  # torch's: new group dicts and a new state, made from the saved ones
        start = 0
        for inner in self.optimizers:  # each optimizer its own share of them again
            count = len(inner.param_groups)
            inner.param_groups, inner.state = self.param_groups[start : start + count], self.state
            start += count

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Refused after construction (torch.optim.Optimizer's __init__ calls it to build the groups): which of the
        optimizers a new group belongs to is the recipe's to say.

        Args:
            param_group: the group torch would add.
        """
        if hasattr(self, "optimizers"):
            raise ConfigError(f"{OPTION}: ParameterGroups takes its groups from the recipe, not add_param_group")
        super().add_param_group(param_group)


def takes_named_parameters(optimizer: Optional[dict]) -> bool:
    """Whether model.optimizer (its plain-data form, {class_path, init_args}) is a ParameterGroups recipe, which is
    built from the network's named parameters."""
    return optimizer is not None and issubclass(import_class(optimizer["class_path"]), ParameterGroups)


# A schedule's arguments that count its steps (or epochs), as torch.optim.lr_scheduler names them.
SCHEDULE_LENGTHS = ("milestones", "step_size", "T_max", "T_0", "total_iters", "total_steps", "step_size_up")


def schedule_beyond(
    config: Optional[dict], interval: str, max_steps: Optional[int], max_epochs: Optional[int]
) -> Optional[str]:
    """What of the learning-rate schedule (model.lr_scheduler's plain data, stepped every `interval`) lies beyond the
    end of the fit, trainer.max_steps or (an "epoch" schedule) trainer.max_epochs; said once before a fit. None when
    all of it is reached, or the fit has no such end."""
    end = max_steps if interval == "step" else max_epochs
    if not config or end is None or end < 0:
        return None
    unit = "trainer.max_steps" if interval == "step" else "trainer.max_epochs"
    late = []
    for name in SCHEDULE_LENGTHS:
        value = (config.get("init_args") or {}).get(name)
        values = value if isinstance(value, (list, tuple)) else [value]
        beyond = [v for v in values if isinstance(v, (int, float)) and v > end]
        if beyond:
            late.append(f"{name} {beyond[0] if len(values) == 1 else beyond}")
    if not late:
        return None
    return (
        f"model.lr_scheduler ({config['class_path'].rsplit('.', 1)[-1]}): {', '.join(late)} beyond {unit} ({end}):"
        " the fit ends before the schedule does"
    )


@contextmanager
def building(option: str, config: Optional[dict], more: Optional[dict[str, Any]] = None) -> Iterator[None]:
    """Report what building a network, optimizer or schedule raises as one line naming the option and its value.

    `config` is the option's plain-data form ({class_path, init_args}); torch's reason follows. An init_arg whose
    name the reason mentions is named as the option (model.optimizer.init_args.momentum: ...), as is an option of
    `more` ({"model.learning_rate": 0.1}) that the class was given too.
    """
    try:
        yield
    except (ValueError, TypeError, RuntimeError, MemoryError, ArithmeticError) as err:
        if isinstance(err, MakemoreError):
            raise
        reason = " ".join(str(err).split()) or type(err).__name__
        options = {
            f"{option}.init_args.{name}": value for name, value in ((config or {}).get("init_args") or {}).items()
        }
        options |= more or {}
        named = named_options(reason, options)
        if not named and isinstance(err, ZeroDivisionError):  # "integer modulo by zero": the arguments that are 0
            kind = int if "integer" in reason else (int, float)
            named = [key for key, value in options.items() if isinstance(value, kind) and value == 0]
        if named:
            where = f"{named[0]}={options[named[0]]!r}"
        else:
            where = f"{option} ({(config or {}).get('class_path', '?')})"
        asked = "" if isinstance(err, MemoryError) else out_of_memory(reason)
        if asked is not None:
            raise ConfigError(f"{where}: not enough memory to build it{asked}; make it smaller") from None
        raise ConfigError(f"{where}: {reason}") from None


# Every size of a throwaway network (its vocab_size) and of its parameters' copies: what a recipe selects by, the
# parameters' names and numbers of dimensions, does not depend on sizes.
THROWAWAY_SIZE = 2


def throwaway_parameters(net: Optional[dict], block_size: Optional[int]) -> list[tuple[str, torch.nn.Parameter]]:
    """The named parameters of the network model.net describes (its plain-data form), each as a small tensor of
    zeros with the same number of dimensions and a zero gradient: what a recipe of parameter groups selects by,
    without the memory of the network. Built on the meta device, which allocates nothing; none (an empty list)
    for a network that cannot be built there (the real one is checked when the fit builds it)."""
    if net is None or block_size is None:
        return []
    try:  # the random state untouched: the fit's seeded draws are those of a run without this check
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            built = network_builder(network_class_config(net))(THROWAWAY_SIZE, block_size)
    except Exception:  # any network of a user's: building the real one reports its errors
        return []
    named = []
    for name, parameter in built.named_parameters():
        throwaway = torch.nn.Parameter(torch.zeros((THROWAWAY_SIZE,) * parameter.dim()))
        throwaway.grad = torch.zeros_like(throwaway)
        named.append((name, throwaway))
    return named


def check_optimization(
    optimizer: Optional[dict],
    lr_scheduler: Optional[dict],
    learning_rate: float,
    net: Optional[dict] = None,
    block_size: Optional[int] = None,
) -> None:
    """Build model.optimizer and model.lr_scheduler (their plain-data forms, {class_path, init_args}) on a throwaway
    parameter and take one step, so that a value torch rejects, when built or only when stepped (CosineAnnealingLR's
    T_max 0 divides by it at the first step), is one line naming the option before any work (see `building`).

    A recipe of parameter groups (makemore.optimizers.ParameterGroups) is built on throwaway copies of the
    network's parameters (`throwaway_parameters` of `net`, model.net's plain-data form, with `block_size`): a
    parameter in no group or in two, and a group whose optimizer refuses its parameters, are one line too."""
    optimizer = optimizer or class_config(torch.optim.SGD, skip=1)
    init_args = {name: value for name, value in optimizer["init_args"].items() if name != "lr"}  # learning_rate sets it
    if takes_named_parameters(optimizer):
        parameters = throwaway_parameters(net, block_size)
        if not parameters:  # no network to select from here: configure_optimizers checks the real one
            return
    else:
        parameter = torch.nn.Parameter(torch.zeros(1))
        parameter.grad = torch.zeros(1)
        parameters = [parameter]
    with building("model.optimizer", optimizer, {"model.learning_rate": learning_rate}):
        built = bound_class({**optimizer, "init_args": init_args})(parameters, lr=learning_rate)
    with building("model.lr_scheduler", lr_scheduler):
        scheduler = bound_class(lr_scheduler)(built) if lr_scheduler is not None else None
    with building("model.optimizer", optimizer, {"model.learning_rate": learning_rate}):
        built.step()
    if scheduler is not None:  # stepped as makemore.steps steps it: without a metric (ReduceLROnPlateau needs one)
        with building("model.lr_scheduler", lr_scheduler):
            scheduler.step()
