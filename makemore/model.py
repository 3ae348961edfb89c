"""Where the embedding-MLP lived before makemore.models: configs and checkpoints naming makemore.model.MLP load."""

from makemore.models.base import Network, NetworkCallable
from makemore.models.mlp import MLP, Affine

__all__ = ["MLP", "Affine", "Network", "NetworkCallable"]
