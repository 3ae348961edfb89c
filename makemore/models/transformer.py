"""A small GPT (makemore.py's Transformer): causal self-attention blocks over the context.

Each option of the speedrun's network (rotary positions, QK-norm, ReLU², zero-initialised projections and head)
is off by default: the defaults are makemore.py's network, parameter for parameter and number for number.
"""

from typing import Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from jsonargparse.typing import PositiveFloat

from makemore.models.base import (
    DropoutRate,
    PositiveInt,
    embed_from_word_start,
    sequence_loss,
    window_positions,
    word_start_aligned,
)


class Rotary(nn.Module):
    """Rotary position embeddings (RoFormer, Su et al. 2021): each pair of a head's dimensions (i, i + hs/2) of a
    query or key at position p turned by the angle p * base^(-2i/hs), so that a query-key product depends on
    the two positions only through their distance.

    Args:
        head_size: dimensions per head (even).
        block_size: positions the tables cover.
        base: the wavelength base of the angles.
    """

    def __init__(self, head_size: int, block_size: int, base: float) -> None:
        super().__init__()
        self.half, self.base = head_size // 2, base
        # Derived from the options, so not in the state_dict: checkpoints hold the same keys as without them.
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.register_buffer("sin", torch.empty(0), persistent=False)
        self.tables(block_size, torch.device("cpu"))

    def tables(self, positions: int, device: torch.device) -> None:
        """The tables (positions, hs) by which `rotate` turns a row at each position: cos of each pair's angle in both
        of its dimensions, and sin with the sign of each half's term."""
        # (grown while sampling under inference mode, they must stay tensors that training can save for backward)
        with torch.inference_mode(False):
            rates = self.base ** -(torch.arange(self.half, dtype=torch.float64) / self.half)  # (hs/2,)
            angles = torch.outer(torch.arange(positions, dtype=torch.float64), rates)  # (positions, hs/2)
            cos, sin = angles.cos().float().to(device), angles.sin().float().to(device)
            dtype = self.cos.dtype if self.cos.numel() else torch.float32  # as the module was cast
            self.cos, self.sin = torch.cat([cos, cos], -1).to(dtype), torch.cat([-sin, sin], -1).to(dtype)

    def at(self, start: int, t: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The tables' rows (t, hs) of positions start, ..., start + t - 1, in `dtype`: what `rotate` takes."""
        if start + t > len(self.cos):  # a stream past the table: the table grows, doubling (the same values)
            self.tables(max(start + t, 2 * len(self.cos)), self.cos.device)
        return self.cos[start : start + t].to(dtype), self.sin[start : start + t].to(dtype)

    @staticmethod
    def rotate(z: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """z (b, nh, t, hs) turned by the rows `at` gave for its positions: (z1 cos - z2 sin, z2 cos + z1 sin) for
        its halves z1, z2, in four operations (rolling by half a head swaps the halves)."""
        return z * cos + z.roll(z.shape[-1] // 2, dims=-1) * sin

    def forward(self, z: torch.Tensor, start: int) -> torch.Tensor:
        """z (b, nh, t, hs) at positions start, ..., start + t - 1, rotated."""
        return self.rotate(z, *self.at(start, z.shape[2], z.dtype))


class ReLUSquared(nn.Module):
    """relu(x)², the MLP's activation of the modded-nanogpt speedrun (So et al. 2021, "Primer")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


ACTIVATIONS = {"gelu": nn.GELU, "relu2": ReLUSquared}


def attention_mask(
    queries: int, keys: int, window: Optional[int], device: torch.device
) -> tuple[Optional[torch.Tensor], bool]:
    """(mask, is_causal) for scaled_dot_product_attention: `queries` consecutive positions, the last of which is the
    last of `keys`, each seeing the keys up to its own, the `window` latest only (None: all of them)."""
    band = window is not None and keys > window
    if queries == keys and not band:
        return None, True
    if queries == 1 and not band:  # one query, which sees every key
        return None, False
    offset = keys - queries  # query i is position offset + i
    mask = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(offset)
    return (mask.triu(offset - window + 1) if band else mask), False


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(ln(x)), then x + mlp(ln(x)).

    Args:
        n_embd: width of the residual stream.
        n_head: attention heads.
        dropout: dropout on attention and the block's outputs.
        rotary: rotate queries and keys by their positions (None: positions come with the input).
        qk_norm: RMSNorm (with a learned gain) of each head's queries and keys before their product.
        activation: the MLP's nonlinearity, a key of ACTIVATIONS.
        zero_init_proj: the attention's output projection and the MLP's second linear start at zero.
        window: each position attends to this many positions at most, its own and those just before (a stream's
            band; None: every position before it).
    """

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float,
        rotary: Optional[Rotary] = None,
        qk_norm: bool = False,
        activation: str = "gelu",
        zero_init_proj: bool = False,
        window: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.n_head, self.dropout, self.window = n_head, dropout, window
        self.ln_1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), ACTIVATIONS[activation](), nn.Linear(4 * n_embd, n_embd)
        )
        self.drop = nn.Dropout(dropout)
        self.rotary = rotary
        # None when off: a network without them keeps its state_dict's keys.
        self.q_norm = nn.RMSNorm(n_embd // n_head) if qk_norm else None
        self.k_norm = nn.RMSNorm(n_embd // n_head) if qk_norm else None
        if zero_init_proj:  # each block starts as the identity (drawn first, so the other weights stay the same)
            for linear in (self.proj, self.mlp[2]):
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, turn: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """The block on x (b, t, c) at positions 0, ..., t - 1; `turn`: their rotary rows (Transformer.turn), looked
        up here when not given."""
        if turn is None and self.rotary is not None:
            turn = self.rotary.at(0, x.shape[1], x.dtype)
        return self.decode(x, turn=turn)[0]

    def decode(
        self,
        x: torch.Tensor,
        past: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        last_only: bool = False,
        turn: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The block on x (b, t, c), the positions after those whose keys and values `past` holds (each (b, nh,
        t_past, hs), or None at the window's start); returns (x, (keys, values) of every position so far).
        `last_only`: the output of the last position only, (b, 1, c) (every position's keys and values still).
        `turn`: with rotary positions, the rows of Rotary.at for x's positions (one lookup for every block)."""
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (b, nh, t, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if turn is not None:
            q, k = Rotary.rotate(q, *turn), Rotary.rotate(k, *turn)
        if last_only:
            q, x, t = q[:, :, -1:], x[:, -1:], 1
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # (b, nh, t_past + t, hs)
        mask, causal = attention_mask(t, k.shape[2], self.window, x.device)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, mask, dropout, is_causal=causal)  # (b, nh, t, hs)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp(self.ln_2(x))), (k, v)


class Transformer(nn.Module):
    """makemore.py's Transformer: token and position embeddings, n_layer causal blocks, a final LayerNorm, logits.

    Returns logits for every position, (b, t, vocab_size); with targets, the loss of every real prediction
    of the window (makemore.models.base.sequence_loss). Train it on whole words (data.train_on: words);
    evaluation scores the last position, as for every model. The head is its own matrix (not tied to the token
    embedding), as in makemore.py. What the options below bought on names and tiny shakespeare: docs/networks.md.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length: with learned positions the longest context it can take (the rows of the
            position table); with rope, how many positions each block attends to (a longer text is read as a
            stream, each position attending to the block_size up to its own).
        n_layer: transformer blocks.
        n_head: attention heads per block (n_embd must divide by it).
        n_embd: width of the residual stream.
        dropout: dropout on the embeddings, attention and block outputs (0 disables it).
        position: how the blocks know where a token is: `learned`, a learned table of block_size position
            embeddings added to the token embeddings (makemore.py, GPT-2); `rope`, rotary position embeddings
            (RoFormer): each block rotates its queries and keys by their positions, so attention depends on
            distances, and no table is learned (n_embd / n_head must be even).
        rope_base: with position `rope`, the base of the rotation's wavelengths (RoFormer's 10,000).
        qk_norm: normalise each head's queries and keys (RMSNorm with a learned gain per dimension) before their
            dot product, which bounds the attention logits at the start and keeps them from growing unchecked
            at high learning rates (as the modded-nanogpt speedrun, OLMo 2 and Gemma 3 do).
        activation: the MLP's nonlinearity: `gelu` (makemore.py, GPT-2) or `relu2`, relu(x)² (Primer; the
            modded-nanogpt speedrun).
        zero_init_proj: start each block's attention output projection and MLP's second linear at zero (weights
            and biases), so each block starts as the identity and the residual stream as the embeddings.
        zero_init_head: start the head (the logits' linear map) at zero: the first loss is exactly
            ln(vocab_size), the uniform guess.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: PositiveInt = 4,
        n_head: PositiveInt = 4,
        n_embd: PositiveInt = 64,
        dropout: DropoutRate = 0.0,
        position: Literal["learned", "rope"] = "learned",
        rope_base: PositiveFloat = 10000.0,
        qk_norm: bool = False,
        activation: Literal["gelu", "relu2"] = "gelu",
        zero_init_proj: bool = False,
        zero_init_head: bool = False,
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"Transformer: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        if position == "rope" and (n_embd // n_head) % 2:
            raise ValueError(
                f"Transformer: position rope turns pairs of a head's dimensions, but n_embd / n_head "
                f"({n_embd} / {n_head}) is odd"
            )
        self.block_size = block_size
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.position = nn.Embedding(block_size, n_embd) if position == "learned" else None
        self.drop = nn.Dropout(dropout)
        # one table of angles for every block (and one to grow, for a stream)
        rotary = Rotary(n_embd // n_head, block_size, rope_base) if position == "rope" else None
        self.blocks = nn.ModuleList(
            Block(
                n_embd,
                n_head,
                dropout,
                rotary,
                qk_norm,
                activation,
                zero_init_proj,
                block_size if position == "rope" else None,
            )
            for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        if zero_init_head:
            nn.init.zeros_(self.head.weight)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        t = idx.shape[1]
        if self.position is None:  # rotary positions: the blocks rotate queries and keys, the input is the tokens
            # (longer than block_size: a stream, each position attending to the block_size positions up to its own)
            aligned, shift = word_start_aligned(idx)
            x = self.embedding(aligned)
        else:
            x, shift = embed_from_word_start(idx, self.embedding, self.position)  # (b, width, n_embd): width <= t
        x = self.drop(x)
        turn = self.turn(0, x.shape[1], x.dtype)
        for block in self.blocks:
            x = block(x, turn)
        logits = window_positions(self.head(self.ln_f(x)), shift, t)  # (b, t, vocab_size)
        return logits, None if targets is None else sequence_loss(logits, idx, targets)

    def decode(
        self,
        x: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]],
        start: int,
        keep: Optional[int] = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The blocks and the head on x (b, t, n_embd), the embedded tokens at positions start, ...; `past`: each
        block's keys and values of the positions before (empty at the start). Returns the logits of the last position
        (b, vocab_size) and each block's keys and values, the last `keep` of them when given (the decoders' step)."""
        past = past or [None] * len(self.blocks)
        turn = self.turn(start, x.shape[1], x.dtype)
        kept = []
        for number, (block, kv) in enumerate(zip(self.blocks, past)):
            last_only = number == len(self.blocks) - 1  # the head reads the last position only
            x, (k, v) = block.decode(x, kv, last_only, turn)
            first = 0 if keep is None else max(0, k.shape[2] - keep)  # (a slice from -keep would keep all for 0)
            kept.append((k[:, :, first:], v[:, :, first:]))
        return self.head(self.ln_f(x[:, -1])), kept

    def turn(self, start: int, t: int, dtype: torch.dtype) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """With rotary positions, the rows of Rotary.at for positions start, ..., start + t - 1, which every block
        shares (one lookup a forward); None with learned positions."""
        rotary = self.blocks[0].rotary
        return None if rotary is None else rotary.at(start, t, dtype)

    def decoder(self, block_size: int) -> "KeyValueCache":
        """Sampling's decoder (makemore.models.base.Decoder): the window's keys and values, one position a step."""
        return KeyValueCache(self, block_size)

    @property
    def reads_streams(self) -> bool:
        """With rotary positions, a text of any length (makemore.models.base.reads_streams): each block attends to
        the block_size positions up to each position's own, wherever it lies."""
        return self.position is None

    def stream_decoder(self) -> "StreamCache":
        """Stream sampling's decoder: each block's keys and values of its last block_size positions."""
        return StreamCache(self)


class KeyValueCache:
    """The Transformer's decoder: each block's keys and values of the window, so that a step runs the new tokens only.

    Exact against the window the samplers and the metric read (the last block_size tokens, positions counted from
    the window's first: `embed_from_word_start`), as long as the window starts at the start token: each new token
    takes the next position and attends to the cached keys (rotated by their positions, with position `rope`).
    Once the text is longer than the window, the window slides by a token a step and every token's position
    changes; each block's output depends on the window's first token, which the slide drops, so every key and value
    of every block but the first changes (and the first block's too with learned positions, which enter its input):
    no cached value stays right, so each step runs the whole window again, the last block and the head on its last
    position only.

    Args:
        net: the Transformer (in eval mode: the samplers' `eval_mode`).
        block_size: the context the samplers read, at most the network's.
    """

    def __init__(self, net: Transformer, block_size: int) -> None:
        if block_size > net.block_size:
            raise ValueError(f"a context of {block_size} positions, but the network's block_size is {net.block_size}")
        self.net, self.block_size = net, block_size
        self.window: Optional[torch.Tensor] = None  # (b, <= block_size): the tokens the window holds
        self.past: list[tuple[torch.Tensor, torch.Tensor]] = []  # per block: keys, values (b, nh, t, hs) of window

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.window is None:  # the start token, position 0
            idx = torch.cat([idx.new_zeros(len(idx), 1), idx], 1)
            self.window = idx.new_zeros(len(idx), 0)
        start = self.window.shape[1]
        window = torch.cat([self.window, idx], 1)
        if window.shape[1] > self.block_size:  # the window slides: every position moves, nothing cached holds
            window, idx, start, self.past = window[:, -self.block_size :], window[:, -self.block_size :], 0, []
        x = net.embedding(idx)  # (b, t, n_embd)
        if net.position is not None:
            x = x + net.position(torch.arange(start, window.shape[1], device=idx.device))
        logits, self.past = net.decode(net.drop(x), self.past, start)
        self.window = window
        return logits


# A stream's keys and values are kept in place, in room for this many windows of positions: the last window - 1
# of them move back to the front once in window + 1 steps or so, instead of being concatenated and cut every step.
STREAM_WINDOWS_KEPT = 2


class StreamBlock:
    """A Block's step of one token in a StreamCache: what `Block.decode` computes, operation for operation on the same
    numbers (so the same logits, bit for bit), with the fixed costs of a step paid once where they can be. The block's
    weights are looked up when made (the block's own tensors, which training updates in place), its modules'
    functions called directly (so no module hooks run). The new positions' queries, keys and values are written
    straight into the rows kept in place (by the matrix product itself), queries and keys are rotated there as one,
    attention reads views of the rows (nothing is concatenated or cut), and a token's views of the rows are made once
    for each row it can land on. Several tokens at once (a prompt) go through `Block.decode` itself, with `past` and
    `keep`.

    Args:
        block: the Block (rotary positions, a band `window`).
        rows: its rotated queries, keys and values, (b, capacity, 3, nh, hs).
    """

    def __init__(self, block: Block, rows: torch.Tensor) -> None:
        self.block, self.rows, self.window = block, rows, block.window
        ln_1, ln_2, fc, activation, fc2 = block.ln_1, block.ln_2, *block.mlp
        self.activation = activation.forward  # (its module call's hooks machinery costs more than GELU's dispatch)
        self.ln_1 = (ln_1.normalized_shape, ln_1.weight, ln_1.bias, ln_1.eps)
        self.ln_2 = (ln_2.normalized_shape, ln_2.weight, ln_2.bias, ln_2.eps)
        # F.linear(x, w, b) of rows is torch.addmm(b, x, w.t()): the same product, which can write in place; and
        # F.layer_norm is torch.layer_norm after a check for overrides, which a step need not pay nine times
        self.qkv_t, self.proj_t, self.fc_t, self.fc2_t = (
            (linear.weight.t(), linear.bias) for linear in (block.qkv, block.proj, fc, fc2)
        )
        self.flat = rows.flatten(2)  # (b, capacity, 3 c): a position's row as the qkv product gives it
        self.halves = (2, rows.shape[-1] // 2)  # a head's two halves: what rotation swaps
        self.token_views: dict[int, tuple[torch.Tensor, ...]] = {}  # one token's views of the rows, by `held`

    def first(self, held: int) -> int:
        """The earliest row that the position after the `held` attends to (the band's)."""
        return max(0, held - self.window + 1)

    def keys_values(self, first: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of `length` rows from `first`, (b, nh, length, hs) each: views of the rows."""
        rows = self.rows.narrow(1, first, length)
        return rows.select(2, 1).transpose(1, 2), rows.select(2, 2).transpose(1, 2)

    def past(self, held: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Block.decode's `past` for the positions after the `held`: the keys and values of the rows before them that
        the first of them attends to, (b, nh, <= window - 1, hs) each."""
        first = self.first(held)
        return self.keys_values(first, held - first)

    def keep(self, keys: torch.Tensor, values: torch.Tensor, held: int, t: int) -> None:
        """Writes the last t of Block.decode's keys and values (b, nh, >= t, hs), those of the t positions after the
        `held`, into their rows."""
        for kept, new in zip(self.keys_values(held, t), (keys, values)):
            kept.copy_(new.narrow(2, new.shape[2] - t, t))

    def token(self, held: int) -> tuple[torch.Tensor, ...]:
        """Views of the rows for one token after `held`, made once for each row: its qkv row as the product's (b, 3 c)
        and as (b, 1, 3 c), its queries and keys to rotate (b, 2, nh, 2, hs / 2) as a view of that row (fewer
        dimensions: cheaper to turn), its query (b, nh, 1, hs), and the keys and values it attends to (b, nh,
        <= window, hs)."""
        views = self.token_views.get(held)
        if views is None:
            b, _, _, n_head, _ = self.rows.shape
            qkv = self.flat.narrow(1, held, 1)
            row = qkv.flatten(1)
            qk = row.narrow(1, 0, 2 * row.shape[1] // 3).view(b, 2, n_head, *self.halves)
            q = self.rows.narrow(1, held, 1).select(2, 0).transpose(1, 2)
            first = self.first(held)
            views = self.token_views[held] = (row, qkv, qk, q, *self.keys_values(first, held + 1 - first))
        return views

    def rotate(self, qk: torch.Tensor, qkv: torch.Tensor, turn: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Turn the queries and keys qk (a view of the rows) in place, QK-normed first with qk_norm (from qkv, (b, t,
        3 c)): Rotary.rotate's z * cos + roll(z) * sin, rolling by half a head being a flip of its two halves."""
        block = self.block
        if block.q_norm is not None:
            heads = qkv.unflatten(-1, (3, block.n_head, -1))
            normed = torch.stack([block.q_norm(heads[:, :, 0]), block.k_norm(heads[:, :, 1])], 2)
            source = normed.reshape(qk.shape)  # (the same order: a head's halves last)
        else:
            source = qk
        cos, sin = turn
        torch.add(source * cos, source.flip(-2) * sin, out=qk)

    def step(self, x: torch.Tensor, held: int, turn: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The block on one token, x (b, c), at the position after the `held` whose rows are filled (the last
        window - 1 at least): writes its row and returns x through the block, (b, c). `turn`: Rotary.at's rows of
        its position, viewed as (1, 1, 1, 2, hs / 2)."""
        block, b = self.block, x.shape[0]  # (len() of a tensor costs a Python call)
        row, qkv, qk, q, k, v = self.token(held)
        torch.addmm(self.qkv_t[1], torch.layer_norm(x, *self.ln_1), self.qkv_t[0], out=row)
        if block.q_norm is None:
            cos, sin = turn
            torch.add(qk * cos, qk.flip(-2) * sin, out=qk)
        else:
            self.rotate(qk, qkv, turn)
        y = F.scaled_dot_product_attention(q, k, v)  # (b, nh, 1, hs): one query sees every key of the band
        x = x + torch.addmm(self.proj_t[1], y.reshape(b, -1), self.proj_t[0])
        hidden = self.activation(torch.addmm(self.fc_t[1], torch.layer_norm(x, *self.ln_2), self.fc_t[0]))
        return x + torch.addmm(self.fc2_t[1], hidden, self.fc2_t[0])


class StreamCache:
    """The Transformer's stream decoder (rotary positions): each block's keys and values of the positions the next
    one attends to, so that a step runs the new tokens only, however long the text.

    Every position p attends, in every block, to positions p - block_size + 1, ..., p (the band of the network's
    forward over a text longer than block_size); its queries and keys are rotated by p itself, and attention depends
    on distances only, so a key computed when its token was new stays right: no window slides, each step runs one
    token through the network. Equal, to float rounding, to the network's forward over everything fed so far
    (makemore.models.base.StreamDecoder); number for number what `Transformer.decode` with the last block_size - 1
    keys and values gives, in fewer operations a step (`StreamBlock`; docs/text.md, "Sampling speed"). The tokens
    that fell out of every block's band still count through the blocks below: a block's value at p holds what the
    block below read up to block_size positions before p.

    Args:
        net: the Transformer, with position rope (in eval mode: the samplers' `eval_mode`).
    """

    def __init__(self, net: Transformer) -> None:
        if not net.reads_streams:
            raise ValueError("a stream needs rotary positions (position rope): learned ones end at block_size")
        self.net, self.fed = net, 0  # tokens fed so far, the start token included
        # Every block's rotated queries, keys and values, (n_layer, b, capacity, 3, nh, hs): those of the last `held`
        # positions in its first `held` rows.
        self.rows: Optional[torch.Tensor] = None
        self.held = 0
        self.blocks: list[StreamBlock] = []  # each block's step, on its rows
        self.ln_f = (net.ln_f.normalized_shape, net.ln_f.weight, net.ln_f.bias, net.ln_f.eps)
        self.head = net.head.weight.t()
        self.tables: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # the rotary tables' views (`turn`)

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        net = self.net
        if not self.fed:  # the start token, position 0
            idx = torch.cat([idx.new_zeros(len(idx), 1), idx], 1)
        b, t = idx.shape
        x = F.embedding(idx, net.embedding.weight)  # (b, t, c)
        self.make_room(x, t)
        if t == 1 and not net.training:  # a step (the samplers' eval mode): StreamBlock's, on the rows in place
            turn = self.turn(x.dtype)
            x = x.view(b, -1)
            for block in self.blocks:
                x = block.step(x, self.held, turn)
            logits = torch.mm(torch.layer_norm(x, *self.ln_f), self.head)  # F.linear without a bias is this product
        else:  # several tokens (a prompt), or dropout in training mode: Transformer.decode on views of the rows
            logits, kept = net.decode(net.drop(x), [block.past(self.held) for block in self.blocks], self.fed)
            for block, (keys, values) in zip(self.blocks, kept):
                block.keep(keys, values, self.held, t)
        self.fed += t
        self.held += t
        return logits

    def turn(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary.at's rows of the next position, viewed as (1, 1, 1, 2, hs / 2) for StreamBlock.step (views of the
        whole tables, made again when the tables grow)."""
        if self.tables is None or self.fed >= len(self.tables[0]) or self.tables[0].dtype != dtype:
            rotary = self.net.blocks[0].rotary
            rotary.at(self.fed, 1, dtype)  # the tables grow, doubling, for a stream past them
            halves = self.blocks[0].halves
            self.tables = tuple(table.to(dtype).view(len(table), 1, 1, *halves) for table in (rotary.cos, rotary.sin))
        return self.tables[0].narrow(0, self.fed, 1), self.tables[1].narrow(0, self.fed, 1)

    def make_room(self, x: torch.Tensor, t: int) -> None:
        """Rows for t more positions after the last block_size - 1 held (which move to the front when they must)."""
        net = self.net
        if self.rows is not None and self.held + t <= self.rows.shape[2]:
            return
        keep = min(self.held, net.block_size - 1)  # what the next positions attend to
        rows = self.rows
        if rows is None or keep + t > rows.shape[2]:  # the first feed, or more tokens at once than fit
            b, _, c = x.shape
            n_head = net.blocks[0].n_head
            capacity = max(STREAM_WINDOWS_KEPT * net.block_size, keep + t)
            rows = x.new_empty(len(net.blocks), b, capacity, 3, n_head, c // n_head)
            self.blocks = [StreamBlock(block, block_rows) for block, block_rows in zip(net.blocks, rows)]
        if keep:  # (cloned: the rows may overlap the ones they move to)
            rows[:, :, :keep] = self.rows[:, :, self.held - keep : self.held].clone()
        self.rows, self.held = rows, keep


class ConcatenatedStream:
    """StreamCache's reference: the stream decoder as `Transformer.decode` computes it, each block's last
    block_size - 1 keys and values concatenated with the new ones and cut at every step. The same logits as
    StreamCache, bit for bit (tests/test_decoding.py), in more operations a step (benchmarks/generation_speed.py
    --split times both).

    Args:
        net: the Transformer, with position rope.
    """

    def __init__(self, net: Transformer) -> None:
        self.net, self.fed, self.past = net, 0, []

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        net = self.net
        if not self.fed:  # the start token, position 0
            idx = torch.cat([idx.new_zeros(len(idx), 1), idx], 1)
        logits, self.past = net.decode(net.embedding(idx), self.past, self.fed, keep=net.block_size - 1)
        self.fed += idx.shape[1]
        return logits
