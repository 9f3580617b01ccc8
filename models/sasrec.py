"""SASRec-class sequential transformer (Kang & McAuley 2018) trained with softmax cross-entropy (SASRec+).

A shopper is their item sequence. The network (:mod:`models.sequential.network`) reads the last
``max_len`` items through causal self-attention and scores every item as the next one; the score is a dot
product with the item vectors, so the top-K is one matrix-vector product after the encoder.

Training follows the SASRec+ / gSASRec findings (Klenitskiy & Vasilev 2023; Petrov & Macdonald 2023): every
position of every sequence predicts the next item with **full softmax cross-entropy over all items**
(``loss="full_ce"``), far better than the original one-negative binary loss; ``loss="sampled_ce"``
scores each target against ``negatives`` uniformly drawn items instead (SASRec+ 3000), for large
catalogues. Optional item features (category, brand, price bucket from the features stage) are embedded
and added to the item embeddings, so items nobody used yet still get a sensible vector.

Early stopping reads only the validation split (NDCG@10, full ranking, histories = train sequences); the
best epoch's weights are kept. Same seed, same thread count, same data: same model. ``torchrun`` with
several processes trains with DistributedDataParallel (:mod:`models.sequential.distributed`). torch is
imported inside the methods only, so ``import models`` and this config class stay torch-free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from models.arrays import flatten_histories
from models.base import (
    EpochCallback,
    FitContext,
    FloatArray,
    IntArray,
    Interactions,
    ModelConfig,
    ModelLoadError,
    Recommender,
)
from models.sequential.windows import (
    crop_padding,
    input_tokens,
    length_batches,
    ndcg_at_k,
    prepare,
    strided_windows,
)

if TYPE_CHECKING:
    import torch

    from models.sequential.network import SASRecNetwork

log = logging.getLogger(__name__)

#: Histories encoded at once when scoring (memory: this x max_len x hidden_size floats, then x n_items).
SCORE_BATCH = 256
#: Prefix of the network's tensors among the saved weights.
NET_PREFIX = "net."


class SASRecConfig(ModelConfig):
    """Hyper-parameters of :class:`SASRecRecommender` (params.yaml ``train.sasrec``).

    Attributes:
        hidden_size: width of item, position and hidden vectors (a multiple of ``num_heads``).
        num_blocks: transformer blocks.
        num_heads: attention heads per block.
        max_len: the most recent items the model reads.
        dropout: dropout on inputs, attention weights and block outputs.
        ffn_multiplier: the feed-forward layer is ``ffn_multiplier * hidden_size`` wide.
        input_scale: multiply input item vectors by ``sqrt(hidden_size)`` (the reference SASRec), so items
            outweigh positions from the first step.
        position_origin: ``newest`` (the newest item is always the last position) or ``oldest`` (positions
            count from the window's first item, so a prefix has the same positions in training and scoring).
        block: ``pre_ln`` (pre-norm blocks, GELU) or ``sasrec`` (the original SASRec block: normalised
            queries, un-normalised keys, ReLU, N(0, 0.02) linear layers; use with ``input_scale`` and
            ``position_origin: oldest`` for the reference layout).
        learning_rate, weight_decay: Adam(W) settings.
        batch_size: training windows per step.
        windows_per_user: train on each user's newest ``windows_per_user`` windows of ``max_len`` items
            only (0: the whole history; 1: the original SASRec's last ``max_len`` items).
        window_stride: training windows end every ``window_stride`` items (0: every ``max_len``, no
            overlap). Smaller strides overlap the windows so every target is predicted from at least
            ``max_len - window_stride`` earlier items (each still once), at ``max_len / window_stride``
            times the work per epoch: for histories much longer than ``max_len``.
        max_epochs: epochs at most; patience: epochs without a better validation NDCG@10 before stopping.
        loss: ``full_ce`` (softmax over every item) or ``sampled_ce`` (target vs ``negatives`` uniform items).
        negatives: items drawn per step for ``sampled_ce``.
        negative_power: ``sampled_ce`` draws item ``i`` with probability proportional to
            ``(popularity_i + 1) ** negative_power`` (0: uniform), and subtracts ``log q`` from every
            logit (the sampled-softmax correction), so popular items are contrasted more often without
            biasing the softmax it estimates.
        length_pool: batches are cut from pools of this many batches' windows sorted by length, so a
            batch's windows have similar lengths and cropping its padding saves work (1: random batches,
            every batch a mix of short and long histories).
        target_weighting: ``per_batch``: each step's loss is the mean over its batch's targets (a batch of
            short windows weighs each of its targets more); ``per_target``: the sum over the batch divided by
            the epoch's mean targets per batch, so every target weighs the same whatever its batch (the
            batches are grouped by length, see ``length_batches``).
        use_item_features: embed the item features the data carries (category, brand, price bucket).
        repeat_head: add a learned bonus to items already in the window (how much the state wants to buy
            again x a weight per distance back), for shops where people buy the same things again
            (groceries). ``sampled_ce`` then also scores each target against the window's other items,
            so the bonus is learned against the items it lifts.
        collapse_repeats: read consecutive events on one item as one step (the view -> purchase funnel).
        valid_max_users: validation users scored each epoch for early stopping (a seeded sample).
        compile: run the training step through ``torch.compile``.
        cpu_bf16: bf16 autocast for CPU training too (CUDA always uses it): about 1.5x faster full
            softmax on CPUs with AVX-512 BF16 or AMX, slower on CPUs without.
    """

    hidden_size: int = Field(64, ge=4)
    num_blocks: int = Field(2, ge=1)
    num_heads: int = Field(1, ge=1)
    max_len: int = Field(50, ge=2)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    ffn_multiplier: int = Field(1, ge=1)
    input_scale: bool = False
    position_origin: Literal["newest", "oldest"] = "newest"
    block: Literal["pre_ln", "sasrec"] = "pre_ln"
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(128, ge=1)
    windows_per_user: int = Field(0, ge=0)
    window_stride: int = Field(0, ge=0)
    max_epochs: int = Field(20, ge=1)
    patience: int = Field(3, ge=1)
    loss: Literal["full_ce", "sampled_ce"] = "full_ce"
    negatives: int = Field(1024, ge=1)
    negative_power: float = Field(0.0, ge=0.0, le=1.0)
    length_pool: int = Field(64, ge=1)
    target_weighting: Literal["per_batch", "per_target"] = "per_batch"
    use_item_features: bool = True
    repeat_head: bool = False
    collapse_repeats: bool = True
    valid_max_users: int = Field(5000, ge=1)
    compile: bool = False
    cpu_bf16: bool = False

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> Self:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}"
            )
        if self.window_stride > self.max_len:
            raise ValueError(f"window_stride {self.window_stride} must not exceed max_len {self.max_len}")
        return self


class SASRecRecommender(Recommender):
    """Next-item scores from a causal transformer over the history; see the module docstring."""

    family = "sasrec"
    config_class = SASRecConfig
    uses_torch = True
    config: SASRecConfig

    def __init__(self, config: SASRecConfig | None = None) -> None:
        super().__init__(config)
        self.network: SASRecNetwork | None = None
        #: Item vectors of the eval-mode network, computed once per set of weights: (I + 1, d) by token,
        #: and (d, I) by item, the layout that makes one shopper's dot products fastest (contiguous reads).
        self._vectors: torch.Tensor | None = None
        self._item_matrix: torch.Tensor | None = None
        #: The epoch whose weights early stopping kept (None: trained without validation, or not yet).
        self.best_epoch: int | None = None

    def refit_config(self) -> SASRecConfig:
        """This config with ``max_epochs`` = the best validation epoch (unchanged when none was chosen)."""
        if self.best_epoch is None:
            return self.config
        return self.config.model_copy(update={"max_epochs": self.best_epoch})

    # ------------------------------------------------------------------------------------------- fitting
    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        ctx: FitContext,
        on_epoch: EpochCallback | None,
    ) -> None:
        import torch

        # Same data, params and thread count -> byte-identical weights, so a DVC rerun reproduces dvc.lock.
        # On the CPU that takes deterministic kernels (the flash-attention and embedding backwards reduce in
        # thread order and moved weights by ~1e-8 from run to run) and the plain-matmul attention, which is
        # also faster here than the CPU flash kernel at these sizes. CUDA keeps its fast kernels (determinism
        # there needs CUBLAS_WORKSPACE_CONFIG): GPU reruns are close, not byte-equal.
        from torch.nn.attention import SDPBackend, sdpa_kernel

        if ctx.device != "cpu":
            self._train(train, valid, ctx, on_epoch)
            return
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            with sdpa_kernel(SDPBackend.MATH):
                self._train(train, valid, ctx, on_epoch)
        finally:
            torch.use_deterministic_algorithms(previous)

    def _train(
        self,
        train: Interactions,
        valid: Interactions | None,
        ctx: FitContext,
        on_epoch: EpochCallback | None,
    ) -> None:
        """The training loop of :meth:`_fit` (deterministic kernels already chosen)."""
        import torch
        from tqdm.auto import tqdm

        from models.sequential.distributed import from_primary, join_process_group, mean_over_group

        cfg = self.config
        group = join_process_group(ctx.device)
        device = torch.device("cuda", group.local_rank) if ctx.device == "cuda" else torch.device("cpu")
        torch.set_num_threads(ctx.resolved_threads())
        torch.manual_seed(ctx.seed)  # initial weights and dropout; DDP copies rank 0's weights to all ranks

        sequences = [prepare(h, cfg.collapse_repeats) for h in train.histories()]
        stride = cfg.window_stride or cfg.max_len
        # (W, L + 1) windows and (W,) how many targets at each window's end are its own
        windows_np, fresh_np = strided_windows(sequences, cfg.max_len, stride, cfg.windows_per_user)
        lengths = (windows_np != 0).sum(axis=1)  # real tokens per window
        targets_total = int(np.minimum(np.maximum(lengths - 1, 0), fresh_np).sum())
        # the loss's divisor: the batch's own target count (per_batch) or the mean count per batch
        per_batch = None
        if cfg.target_weighting == "per_target":
            per_batch = targets_total / max(1, -(-len(windows_np) // cfg.batch_size))
        windows = torch.from_numpy(windows_np)
        net = self._new_network(_feature_codes(train, cfg.use_item_features)).to(device)
        self.network, self._vectors, self._item_matrix = net, None, None
        check = None
        if valid is not None:
            check = _ValidationCheck(sequences, valid, cfg, ctx.seed, ctx.exclude_seen)
        if len(windows) == 0:
            log.warning("sasrec: no history has two items; the network keeps its initial weights")
            self._finish(net)
            return

        module: torch.nn.Module = net
        if group.distributed:
            from torch.nn.parallel import DistributedDataParallel

            gpus = [device.index] if device.type == "cuda" else None
            module = DistributedDataParallel(net, device_ids=gpus)
        step: Callable[..., torch.Tensor] = torch.compile(module) if cfg.compile else module
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        sampler: torch.utils.data.DistributedSampler[tuple[torch.Tensor, ...]]
        sampler = torch.utils.data.DistributedSampler(
            torch.utils.data.TensorDataset(windows),
            num_replicas=group.world_size,
            rank=group.rank,
            shuffle=True,
            seed=ctx.seed,
        )
        negatives = torch.Generator().manual_seed(ctx.seed + 7919 * (group.rank + 1))
        proposal = torch.from_numpy(
            np.power(self.item_popularity.astype(np.float64) + 1.0, cfg.negative_power)
        )
        proposal = (proposal / proposal.sum()).float()  # (I,) q: the negative sampler's distribution
        log_q = proposal.log().to(device)  # (I,) once, not per step

        best_ndcg, best_epoch, best_state = -1.0, 0, None
        # Progress on a terminal only (tqdm disables itself elsewhere), and on rank 0 only.
        progress = tqdm(range(1, cfg.max_epochs + 1), desc="sasrec", disable=None if group.primary else True)
        for epoch in progress:
            started = time.perf_counter()
            sampler.set_epoch(epoch)
            order = np.fromiter(iter(sampler), dtype=np.int64)  # this rank's shuffled windows
            epoch_rng = np.random.default_rng([ctx.seed, epoch])
            net.train()
            total, steps = 0.0, 0
            for rows in length_batches(order, lengths, cfg.batch_size, epoch_rng, cfg.length_pool):
                # (B, L' + 1): similar-length windows, all-padding columns cropped
                batch = torch.from_numpy(crop_padding(windows_np[rows], keep_last=2)).to(device)
                fresh = torch.from_numpy(fresh_np[rows]).to(device)
                loss = self._loss(step, batch, fresh, negatives, (proposal, log_q), device, per_batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total, steps = total + float(loss.item()), steps + 1
            seconds = time.perf_counter() - started
            metrics = {
                "loss": mean_over_group(total / max(steps, 1), group),
                "sequences_per_s": len(order) * group.world_size / max(seconds, 1e-9),
                "seconds": seconds,
            }
            if check is not None:
                ndcg = check.ndcg(self, net) if group.primary else 0.0
                metrics["valid_ndcg_at_10"] = from_primary(ndcg, group)
            if group.primary:
                progress.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "seconds"})
                log.info("sasrec epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            if check is None:
                continue
            if metrics["valid_ndcg_at_10"] > best_ndcg:
                best_ndcg, best_epoch = metrics["valid_ndcg_at_10"], epoch
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            elif epoch - best_epoch >= cfg.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)  # the best validation epoch's weights
            self.best_epoch = best_epoch
            log.info("sasrec: best validation NDCG@10 %.4f at epoch %d", best_ndcg, best_epoch)
        self._finish(net)

    def _loss(
        self,
        step: Callable[..., torch.Tensor],
        batch: torch.Tensor,
        fresh: torch.Tensor,
        negatives: torch.Generator,
        sampler: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        divisor: float | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of every real (input, next item) pair of a batch of windows ``(B, L + 1)``.

        ``fresh`` (B,): only each window's last ``fresh`` targets count (overlapping windows share the
        others with a newer window). ``sampler``: the negatives' distribution q (I,) on the CPU and log q
        on ``device``. ``divisor``: the loss is the sum over targets / ``divisor`` (None: the mean).
        """
        import torch
        import torch.nn.functional as F

        tokens, targets = batch[:, :-1], batch[:, 1:]  # (B, L) each: position t predicts token t + 1
        length = tokens.shape[1]
        own = torch.arange(length, device=tokens.device)[None] >= length - fresh[:, None]  # (B, L)
        positions = ((tokens != 0) & (targets != 0) & own).nonzero()  # (N, 2)
        wanted = targets[positions[:, 0], positions[:, 1]] - 1  # (N,) item indices
        bf16 = device.type == "cuda" or self.config.cpu_bf16
        autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
        if self.config.loss == "full_ce":
            from models.sequential.losses import softmax_cross_entropy

            with autocast:
                scores = step(tokens, positions, None)  # (N, I)
            return _reduce(softmax_cross_entropy(scores.float(), wanted), divisor)
        # Sampled softmax (SASRec+ with sampled negatives): each position's own target against K items
        # drawn from q. The other positions' targets are NOT negatives: in-batch items are popularity-biased,
        # and using them uncorrected pushes popular items down, which costs NDCG. Every logit is corrected
        # by -log q (a constant, i.e. nothing, for uniform draws).
        n, k = len(wanted), self.config.negatives
        proposal, log_q = sampler
        if self.config.negative_power == 0.0:
            drawn = torch.randint(0, self.n_items, (k,), generator=negatives)
        else:
            drawn = torch.multinomial(proposal, k, replacement=True, generator=negatives)
        drawn = drawn.to(device)
        if self.config.repeat_head:
            losses = self._repeat_loss(step, tokens, positions, wanted, drawn, log_q, autocast)
            return _reduce(losses, divisor)
        with autocast:
            scores = step(tokens, positions, drawn, wanted).float()  # (N, 1 + K): own target first
        positive = scores[:, :1] - log_q[wanted][:, None]  # (N, 1)
        negative = scores[:, 1:] - log_q[drawn][None, :]  # (N, K)
        negative = negative.masked_fill(drawn[None, :] == wanted[:, None], float("-inf"))
        logits = torch.cat([positive, negative], dim=1)  # (N, 1 + K): the target is column 0
        zeros = torch.zeros(n, dtype=torch.long, device=device)
        return _reduce(F.cross_entropy(logits, zeros, reduction="none"), divisor)

    def _repeat_loss(
        self,
        step: Callable[..., torch.Tensor],
        tokens: torch.Tensor,
        positions: torch.Tensor,
        wanted: torch.Tensor,
        drawn: torch.Tensor,
        log_q: torch.Tensor,
        autocast: Any,
    ) -> torch.Tensor:
        """Per-target sampled cross-entropy (N,) with the repeat head: the target against the items already
        in its window (scored exactly, with their bonus) and the drawn items outside it.

        The denominator is the sampled softmax's estimate of the full one: the target and the window's items
        count once each, every drawn item stands for ``1 / (K q)`` items (``- log(K q)`` on its logit).
        """
        import math

        import torch
        import torch.nn.functional as F

        drawn = torch.unique(drawn)  # (K',) each item once, so one in the window can be masked out here
        with autocast:
            scores = step(tokens, positions, drawn, wanted).float()  # (N, 1 + K' + L')
        k = len(drawn)
        rows, cols = positions[:, 0], positions[:, 1]
        keep, in_window = window_negatives(tokens, rows, cols, wanted, drawn, self.n_items)
        correction = log_q[drawn] + math.log(self.config.negatives)  # (K',) log(K q)
        negative = (scores[:, 1 : 1 + k] - correction[None]).masked_fill(in_window, float("-inf"))
        window = scores[:, 1 + k :].masked_fill(~keep, float("-inf"))  # (N, L')
        logits = torch.cat([scores[:, :1], negative, window], dim=1)  # the target is column 0
        zeros = torch.zeros(len(wanted), dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, zeros, reduction="none")

    def _new_network(
        self, features: Mapping[str, IntArray], sizes: Mapping[str, int] | None = None
    ) -> SASRecNetwork:
        """A fresh network; ``features``: per-item codes (0 = unknown), ``sizes``: codes per feature (when
        loading, where the codes come with the saved weights)."""
        import torch

        from models.sequential.network import NetworkShape, SASRecNetwork

        cfg = self.config
        names = sorted(features if sizes is None else sizes)
        if sizes is None:
            sizes = {n: int(features[n].max(initial=0)) + 1 for n in names}
        shape = NetworkShape(
            n_items=self.n_items,
            hidden_size=cfg.hidden_size,
            num_blocks=cfg.num_blocks,
            num_heads=cfg.num_heads,
            max_len=cfg.max_len,
            dropout=cfg.dropout,
            ffn_multiplier=cfg.ffn_multiplier,
            input_scale=cfg.input_scale,
            position_origin=cfg.position_origin,
            feature_sizes={n: sizes[n] for n in names},
            repeat_head=cfg.repeat_head,
            block=cfg.block,
        )
        net = SASRecNetwork(shape)
        if names and features:
            net.set_feature_codes(torch.from_numpy(np.stack([features[n] for n in names], axis=1)))
        return net

    def _finish(self, net: SASRecNetwork) -> None:
        """Keep the fitted network on the CPU in eval mode (scoring runs in-process on the CPU)."""
        self.network = net.cpu().eval()
        self._vectors = self._item_matrix = None

    # ------------------------------------------------------------------------------------------- scoring
    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """Next-item scores ``(len(histories), n_items)`` from the last ``max_len`` items of each history."""
        import torch

        self._check_fitted()
        for history in histories:
            if len(history) and (int(np.min(history)) < 0 or int(np.max(history)) >= self.n_items):
                raise ValueError(f"history item index out of range [0, {self.n_items})")
        if self.network is None:
            raise RuntimeError("sasrec model is not fitted")
        if self._vectors is None or self._item_matrix is None:
            with torch.inference_mode():
                self._vectors = self.network.eval().item_vectors().detach().clone()
                self._item_matrix = self._vectors[1:].T.contiguous()
        return self._score_with(self.network, self._vectors, histories, self._item_matrix)

    def _score_with(
        self,
        net: SASRecNetwork,
        vectors: torch.Tensor,
        histories: Sequence[IntArray],
        item_matrix: torch.Tensor | None = None,
    ) -> FloatArray:
        """Scores from an eval-mode ``net``, its ``vectors`` (I + 1, d) and ``item_matrix`` (d, I)."""
        import torch

        cfg = self.config
        out = np.empty((len(histories), self.n_items), dtype=np.float32)
        on_cpu = vectors.device.type == "cpu"
        with torch.inference_mode():
            for start in range(0, len(histories), SCORE_BATCH):
                chunk = histories[start : start + SCORE_BATCH]
                tokens = torch.from_numpy(
                    crop_padding(input_tokens(chunk, cfg.max_len, cfg.collapse_repeats))
                )
                # (B, d): the state after the newest item, then its dot products with every item (B, I)
                tokens = tokens.to(vectors.device)
                hidden = net.encode(tokens, vectors)[:, -1]
                if item_matrix is None:
                    item_matrix = vectors[1:].T.contiguous()
                if on_cpu:  # written straight into the result
                    scores = torch.from_numpy(out[start : start + len(chunk)])
                    torch.matmul(hidden, item_matrix, out=scores)
                else:
                    scores = (hidden @ item_matrix).float()
                if net.shape.repeat_head:
                    rows = torch.arange(len(chunk), device=tokens.device)
                    last = torch.full_like(rows, tokens.shape[1] - 1)
                    net.add_repeat_bonus(scores, tokens, rows, last, hidden.float())
                if not on_cpu:
                    out[start : start + len(chunk)] = scores.cpu().numpy()
        return out

    # ------------------------------------------------------------------------------------------- weights
    def _weights(self) -> dict[str, NDArray[Any]]:
        if self.network is None:
            raise RuntimeError("sasrec model is not fitted")
        return {NET_PREFIX + k: v.detach().cpu().numpy() for k, v in self.network.state_dict().items()}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        import torch

        state = {k[len(NET_PREFIX) :]: v for k, v in weights.items() if k.startswith(NET_PREFIX)}
        expected = (self.n_items + 1, self.config.hidden_size)
        items = state.get("item_embedding.weight")
        if items is None or items.shape != expected:
            raise ModelLoadError(f"sasrec item_embedding missing or not of shape {expected}")
        prefix, suffix = "feature_embeddings.", ".weight"
        sizes = {
            k[len(prefix) : -len(suffix)]: int(v.shape[0])
            for k, v in state.items()
            if k.startswith(prefix) and k.endswith(suffix)
        }
        net = self._new_network({}, sizes)  # the feature codes come with the weights
        try:
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"sasrec weights do not fit its config: {exc}") from exc
        self._finish(net)


class _ValidationCheck:
    """NDCG@10 on the validation split for early stopping: train sequence in, that user's valid items out."""

    def __init__(
        self,
        sequences: Sequence[IntArray],
        valid: Interactions,
        cfg: SASRecConfig,
        seed: int,
        exclude_seen: bool = False,
    ) -> None:
        targets = valid.histories()
        users = np.array([u for u, t in enumerate(targets) if len(t)], dtype=np.int64)
        if len(users) > cfg.valid_max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, cfg.valid_max_users, replace=False))
        self.histories = [sequences[u] for u in users]
        self.relevant = [np.unique(targets[u]) for u in users]
        # (row, item) pairs of the shoppers' own items, masked as the evaluation does (None: kept rankable)
        self.seen = flatten_histories(self.histories, valid.n_items) if exclude_seen else None

    def ndcg(self, model: SASRecRecommender, net: SASRecNetwork) -> float:
        """Score the validation users with ``net`` in eval mode (on its device), then train mode again."""
        import torch

        net.eval()
        try:
            with torch.inference_mode():
                vectors = net.item_vectors()
            scores = model._score_with(net, vectors, self.histories)
            if self.seen is not None:  # as the evaluation ranks: the shopper's own items are not candidates
                scores[self.seen] = -np.inf
            return ndcg_at_k(scores, self.relevant, k=10)
        finally:
            net.train()


def window_negatives(
    tokens: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    wanted: torch.Tensor,
    drawn: torch.Tensor,
    n_items: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which window columns and which drawn items are negatives of each scored position.

    Args:
        tokens: (B, L') the inputs; rows, cols: (N,) the scored positions; wanted: (N,) their targets;
        drawn: (K,) distinct drawn items; n_items: I.
    Returns:
        keep (N, L'): the window column is a real token at or before the position, the last such
        occurrence of its item (one column per item) and not the target; in_window (N, K): the drawn item
        is already in the window up to the position (it is scored there, with its bonus) or is the target.
    """
    import torch

    length = tokens.shape[1]
    span = torch.arange(length, device=tokens.device)
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, L', L')
    later = same & (span[None, None, :] > span[None, :, None])  # [b, s, s']: the same token again at s' > s
    # (B, L'): the next column holding the same token (L' when none)
    following = torch.where(later.any(dim=2), later.to(torch.int8).argmax(dim=2), length)
    window = tokens[rows]  # (N, L')
    upto = (span[None] <= cols[:, None]) & (window != 0)  # (N, L')
    keep = upto & (following[rows] > cols[:, None]) & (window - 1 != wanted[:, None])
    column = torch.full((n_items,), len(drawn), dtype=torch.long, device=tokens.device)
    column[drawn] = torch.arange(len(drawn), device=tokens.device)  # item -> its drawn column (K: none)
    hit = torch.where(upto, column[(window - 1).clamp(min=0)], len(drawn))  # (N, L')
    in_window = torch.zeros(len(rows), len(drawn) + 1, dtype=torch.bool, device=tokens.device)
    in_window.scatter_(1, hit, True)
    in_window = in_window[:, :-1] | (drawn[None, :] == wanted[:, None])
    return keep, in_window


def _reduce(losses: torch.Tensor, divisor: float | None) -> torch.Tensor:
    """The mean of per-target ``losses`` (N,), or their sum / ``divisor``."""
    return losses.mean() if divisor is None else losses.sum() / divisor


def _feature_codes(train: Interactions, use: bool) -> dict[str, IntArray]:
    """The data's item features shifted so 0 = unknown (the data's -1), or none when not used."""
    if not use or not train.item_features:
        return {}
    return {name: np.asarray(codes, dtype=np.int64) + 1 for name, codes in train.item_features.items()}
