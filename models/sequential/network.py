"""The SASRec-class network: causal self-attention over a shopper's item sequence (imports torch).

Read top to bottom: item vectors (an item embedding plus optional item-feature embeddings) -> input layer
(item vector + learned position, dropout) -> ``num_blocks`` pre-LN transformer blocks with causal
self-attention -> final layer norm -> scores = dot products with the item vectors (weights tied).

``forward`` returns scores, never a loss: the loss (full or sampled softmax cross-entropy) lives in
:mod:`models.sasrec`, which also imports this module lazily (so ``import models`` never imports torch).

Shapes: ``B`` sequences, ``L = max_len`` positions, ``d = hidden_size``, ``H`` heads, ``I = n_items``,
``F`` item features, ``N`` selected (sequence, position) pairs, ``C`` candidate items.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class NetworkShape:
    """What the layers' sizes depend on (the family's config plus the data's sizes)."""

    n_items: int
    hidden_size: int
    num_blocks: int
    num_heads: int
    max_len: int
    dropout: float
    ffn_multiplier: int
    #: multiply the input item vectors by sqrt(d) (the reference SASRec), so a new item's vector outweighs the
    #: position's at the start of training instead of being as small as it.
    input_scale: bool
    #: where positions count from: ``newest`` (the last item is always position L - 1) or ``oldest`` (the
    #: first item of the window is position 0, as in right-padded implementations): with ``oldest`` a
    #: prefix gets the same positions at training time (inside a longer window) and at scoring time.
    position_origin: str
    #: item feature name -> number of codes (code 0 = unknown), in a fixed (sorted) order.
    feature_sizes: Mapping[str, int]
    #: add a learned bonus to the score of every item already in the window (RepeatNet-style repeat
    #: mode, for shops where people buy the same things again): ``gate(state) x recency[distance]``.
    repeat_head: bool = False
    #: ``pre_ln`` (:class:`TransformerBlock`) or ``sasrec`` (:class:`SASRecBlock`, the original layout).
    block: str = "pre_ln"


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``t`` sees positions ``<= t`` that are not padding."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = dropout

    def forward(self, x: Tensor, allowed: Tensor, keys: Tensor | None = None) -> Tensor:
        """``x``: (B, L, d); ``allowed``: (B, 1, L, L) booleans, True where a query may see a key;
        ``keys``: (B, L, d) what keys and values are computed from (None: ``x``, as queries are)."""
        batch, length, hidden = x.shape
        heads = (batch, length, self.num_heads, hidden // self.num_heads)
        if keys is None:  # (B, L, 3d) -> 3 x (B, L, H, d/H)
            q, k, v = self.qkv(x).view(*heads[:2], 3, *heads[2:]).unbind(2)
        else:
            weight, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x, weight[:hidden], bias[:hidden]).view(heads)
            k, v = F.linear(keys, weight[hidden:], bias[hidden:]).view(*heads[:2], 2, *heads[2:]).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, d/H)
        p = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)  # (B, H, L, d/H)
        out: Tensor = self.out(attended.transpose(1, 2).reshape(batch, length, hidden))  # (B, L, d)
        return out


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + attention(norm(x))``, then ``x + feed_forward(norm(x))``, dropout on both."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, ffn_multiplier: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout)
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, ffn_multiplier * hidden_size),
            nn.GELU(),
            nn.Linear(ffn_multiplier * hidden_size, hidden_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), allowed))  # (B, L, d)
        out: Tensor = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))  # (B, L, d)
        return out


class SASRecBlock(nn.Module):
    """The original SASRec block (Kang & McAuley 2018, as in the PyTorch port the SASRec+ study trains):
    the queries are normalised, keys and values are not, and the attention is added to the normalised
    queries; the feed-forward (ReLU, dropout inside) then runs on a normalised stream with its own residual.
    Every sub-layer's output is thus a normalised vector plus a correction (post-LN-like)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, ffn_multiplier: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.attention = CausalSelfAttention(hidden_size, num_heads, dropout)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, ffn_multiplier * hidden_size),
            nn.Dropout(dropout),
            nn.ReLU(),
            nn.Linear(ffn_multiplier * hidden_size, hidden_size),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        queries = self.attention_norm(x)  # (B, L, d)
        x = queries + self.attention(queries, allowed, keys=x)  # (B, L, d)
        x = self.feed_forward_norm(x)
        out: Tensor = x + self.feed_forward(x)  # (B, L, d)
        return out


#: The block layouts by name (``NetworkShape.block``).
BLOCKS: dict[str, type[TransformerBlock] | type[SASRecBlock]] = {
    "pre_ln": TransformerBlock,
    "sasrec": SASRecBlock,
}


class SASRecNetwork(nn.Module):
    """Token ``0`` is padding and token ``i + 1`` is item ``i`` (see :mod:`models.sequential.windows`)."""

    def __init__(self, shape: NetworkShape) -> None:
        super().__init__()
        if shape.hidden_size % shape.num_heads:
            raise ValueError(
                f"hidden_size {shape.hidden_size} is not a multiple of num_heads {shape.num_heads}"
            )
        self.shape = shape
        d = shape.hidden_size
        self.item_embedding = nn.Embedding(shape.n_items + 1, d, padding_idx=0)  # (I + 1, d)
        names = sorted(shape.feature_sizes)
        self.feature_embeddings = nn.ModuleDict({n: nn.Embedding(shape.feature_sizes[n], d) for n in names})
        # Feature codes per token (row 0: padding, all 0); filled by set_feature_codes. (I + 1, F)
        self.register_buffer("feature_codes", torch.zeros(shape.n_items + 1, len(names), dtype=torch.long))
        self.position_embedding = nn.Embedding(shape.max_len, d)  # (L, d)
        self.input_dropout = nn.Dropout(shape.dropout)
        if shape.block not in BLOCKS:
            raise ValueError(f"unknown block {shape.block!r}; expected one of {sorted(BLOCKS)}")
        block = BLOCKS[shape.block]
        self.blocks = nn.ModuleList(
            block(d, shape.num_heads, shape.dropout, shape.ffn_multiplier) for _ in range(shape.num_blocks)
        )
        self.final_norm = nn.LayerNorm(d)
        if shape.repeat_head:
            # How much this state wants to buy again (>= 0 after softplus) ...
            self.repeat_gate = nn.Linear(d, 1)
            # ... times a learned weight per distance (in positions) back to the earlier occurrence. (L,)
            self.repeat_recency = nn.Parameter(torch.zeros(shape.max_len))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small normal embeddings (std 0.02, padding row zero) and PyTorch's default for the rest; with the
        ``sasrec`` block the blocks' linear layers too are N(0, 0.02) with zero biases, as there."""
        for embedding in (self.item_embedding, self.position_embedding, *self.feature_embeddings.values()):
            assert isinstance(embedding, nn.Embedding)
            nn.init.normal_(embedding.weight, std=0.02)
        if self.shape.block == "sasrec":
            for layer in self.blocks.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, std=0.02)
                    nn.init.zeros_(layer.bias)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def set_feature_codes(self, codes: Tensor) -> None:
        """``codes``: (I, F) int codes per item in sorted feature-name order, 0 = unknown."""
        buffer: Tensor = self.feature_codes  # type: ignore[assignment]
        with torch.no_grad():
            buffer[1:] = codes.to(buffer.device)

    def item_vectors(self) -> Tensor:
        """(I + 1, d): each token's item embedding plus the embeddings of its features."""
        vectors = self.item_embedding.weight
        codes: Tensor = self.feature_codes  # type: ignore[assignment]
        for column, embedding in enumerate(self.feature_embeddings.values()):
            vectors = vectors + embedding(codes[:, column])
        return vectors

    def encode(self, tokens: Tensor, vectors: Tensor) -> Tensor:
        """``tokens``: (B, L') left-padded, L' <= L; ``vectors``: (I + 1, d) -> hidden states (B, L', d).

        Inputs may be cropped to their longest real sequence (L' < L): the last column is always position
        L - 1, so a cropped batch gives exactly the hidden states of the full-width one (padding is masked).
        """
        length = tokens.shape[1]
        real = tokens != 0  # (B, L')
        if self.shape.position_origin == "oldest":
            # (B, L'): 0 at each row's first real token; padding clamped to 0 (masked below anyway)
            positions = (real.cumsum(dim=1) - 1).clamp(min=0)
            placed = self.position_embedding(positions)  # (B, L', d)
        else:
            last = torch.arange(self.shape.max_len - length, self.shape.max_len, device=tokens.device)
            placed = self.position_embedding(last)[None]  # (1, L', d)
        items = vectors[tokens]  # (B, L', d)
        if self.shape.input_scale:
            items = items * self.shape.hidden_size**0.5
        x = items + placed  # (B, L', d)
        x = self.input_dropout(x) * real[..., None]
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()  # (L, L)
        # A query sees earlier real keys; padding queries see themselves only (no empty softmax rows).
        eye = torch.eye(length, dtype=torch.bool, device=tokens.device)
        allowed = ((causal[None] & real[:, None, :]) | eye[None])[:, None]  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, allowed)
        hidden: Tensor = self.final_norm(x)  # (B, L, d)
        return hidden

    def repeat_bonus(self, tokens: Tensor, rows: Tensor, cols: Tensor, picked: Tensor) -> Tensor:
        """(N, L'): what each earlier token of a row adds to its item's score at position ``cols``.

        ``tokens``: (B, L') the inputs; ``rows``, ``cols``: (N,) the scored (sequence, position) pairs;
        ``picked``: (N, d) their hidden states. Zero for padding and for tokens after the position; an item
        that occurs several times gets the sum of its occurrences' bonuses (see :meth:`add_repeat_bonus`).
        """
        length = tokens.shape[1]
        distance = cols[:, None] - torch.arange(length, device=tokens.device)[None]  # (N, L')
        earlier = (distance >= 0) & (tokens[rows] != 0)  # (N, L')
        recency = self.repeat_recency[distance.clamp(0, self.shape.max_len - 1)]  # (N, L')
        gate = F.softplus(self.repeat_gate(picked))  # (N, 1)
        return torch.where(earlier, gate * recency, torch.zeros_like(recency))

    def add_repeat_bonus(
        self, scores: Tensor, tokens: Tensor, rows: Tensor, cols: Tensor, picked: Tensor
    ) -> Tensor:
        """``scores`` (N, I) over every item plus each position's repeat bonus, summed per item (in place)."""
        bonus = self.repeat_bonus(tokens, rows, cols, picked).to(scores.dtype)  # (N, L')
        items = (tokens[rows] - 1).clamp(min=0)  # (N, L'): padding adds its zero bonus to item 0
        return scores.scatter_add_(1, items, bonus)

    def forward(
        self,
        tokens: Tensor,
        positions: Tensor | None = None,
        candidates: Tensor | None = None,
        own: Tensor | None = None,
    ) -> Tensor:
        """Scores of items as the next token.

        Args:
            tokens: (B, L) left-padded input tokens.
            positions: (N, 2) (sequence, position) pairs to score; None: the last position of each sequence
                (N = B), which is what serving asks.
            candidates: (C,) item indices to score; None: every item (C = I).
            own: (N,) one item per position (e.g. its target), scored first, against that position only.
        Returns:
            (N, C) scores: hidden state at each position · item vector; (N, 1 + C) with ``own`` in column 0.
            With the repeat head: every item's score includes its repeat bonus when ``candidates`` is None;
            with ``candidates`` and ``own``, the ``own`` column includes it, the candidate columns do not,
            and L more columns follow: each input token's item scored with its bonus (:meth:`window_scores`).
        """
        vectors = self.item_vectors()  # (I + 1, d)
        hidden = self.encode(tokens, vectors)  # (B, L, d)
        if positions is None:
            rows = torch.arange(tokens.shape[0], device=tokens.device)
            cols = torch.full_like(rows, tokens.shape[1] - 1)
        else:
            rows, cols = positions[:, 0], positions[:, 1]
        picked = hidden[rows, cols]  # (N, d)
        table = vectors[1:] if candidates is None else vectors[candidates + 1]  # (C, d)
        scores = picked @ table.T  # (N, C)
        repeat = self.shape.repeat_head
        if candidates is None and repeat:
            scores = self.add_repeat_bonus(scores, tokens, rows, cols, picked)
        if own is None:
            return scores
        paired = (picked * vectors[own + 1]).sum(dim=-1, keepdim=True)  # (N, 1)
        if not repeat:
            return torch.cat([paired, scores], dim=1)  # (N, 1 + C)
        bonus = self.repeat_bonus(tokens, rows, cols, picked)  # (N, L)
        paired = paired + (bonus * (tokens[rows] - 1 == own[:, None])).sum(dim=1, keepdim=True)
        window = self.window_scores(tokens, vectors, hidden, rows, cols, bonus)  # (N, L)
        return torch.cat([paired, scores, window], dim=1)  # (N, 1 + C + L)

    def window_scores(
        self, tokens: Tensor, vectors: Tensor, hidden: Tensor, rows: Tensor, cols: Tensor, bonus: Tensor
    ) -> Tensor:
        """(N, L'): each input token's item scored at each position, plus the item's whole repeat bonus.

        Every occurrence of an item carries the item's score; the loss keeps one column per item
        (``window_negatives`` in :mod:`models.sasrec`).
        """
        items = vectors[tokens]  # (B, L', d)
        dots = (hidden @ items.transpose(1, 2))[rows, cols]  # (B, L', L') -> (N, L')
        first = first_occurrence(tokens)[rows]  # (N, L'): the column of each token's first occurrence
        per_item = torch.zeros_like(bonus).scatter_add_(1, first, bonus)  # (N, L') bonus summed per item
        return dots + per_item.gather(1, first)


def first_occurrence(tokens: Tensor) -> Tensor:
    """(B, L'): for each token, the column where the same token first occurs in its row."""
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, L', L'): [b, s, s'] token s == token s'
    return same.to(torch.int8).argmax(dim=2)  # the first True
