"""The sequential transformer family: it learns order, stops on validation, round-trips, embeds item features.

The contract suite (tests/models/test_contract.py) covers what every family shares; these tests cover what
only a sequence model can show: toy chains where the next item follows from the previous one (popularity is
flat there, so only a model of order can score).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.errors import RecopsError
from models import create_model, load_model
from models.base import FitContext, IntArray, Interactions
from models.sasrec import SASRecConfig, SASRecRecommender
from models.sequential.windows import ndcg_at_k
from tests.models.conftest import DAY, T0

N_CHAIN_ITEMS = 30
CONTEXT = FitContext(seed=0, threads=1)
#: Small and quick: the chain data below trains in a few seconds on one core.
SMALL = {"hidden_size": 32, "max_len": 8, "batch_size": 32, "max_epochs": 12, "learning_rate": 0.01}


def chain_sequences(n_users: int, length: int, seed: int = 0) -> list[IntArray]:
    """Each user walks ``start, start + 1, ...`` (mod the catalogue) from a random start item."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, N_CHAIN_ITEMS, n_users)
    return [(start + np.arange(length)) % N_CHAIN_ITEMS for start in starts]


def as_interactions(sequences: list[IntArray], n_items: int = N_CHAIN_ITEMS) -> Interactions:
    users = np.concatenate([np.full(len(s), u) for u, s in enumerate(sequences)]).astype(np.int64)
    items = np.concatenate(sequences).astype(np.int64)
    step = np.concatenate([np.arange(len(s)) for s in sequences])
    ts = (T0 + step * DAY + users).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    return Interactions(
        user_idx=users[order],
        item_idx=items[order],
        weight=np.ones(len(items), np.float32),
        ts=ts[order],
        session_idx=users[order],
        n_users=len(sequences),
        n_items=n_items,
    )


@pytest.fixture(scope="module")
def chains() -> tuple[Interactions, Interactions, list[IntArray], IntArray]:
    """(train, valid, test histories, test targets): per user, the last item is test, the one before valid."""
    sequences = chain_sequences(200, 8)
    train = as_interactions([s[:-2] for s in sequences])
    valid_rows = as_interactions([s[-2:-1] for s in sequences])
    histories = [s[:-1] for s in sequences]
    return train, valid_rows, histories, np.array([s[-1] for s in sequences])


def test_loss_falls_and_the_model_beats_popularity_on_ordered_data(
    chains: tuple[Interactions, Interactions, list[IntArray], IntArray],
) -> None:
    train, valid, histories, targets = chains
    epochs: list[dict[str, float]] = []
    model = create_model("sasrec", SMALL).fit(train, valid, CONTEXT, lambda _, m: epochs.append(m))
    assert epochs[-1]["loss"] < 0.7 * epochs[0]["loss"], [e["loss"] for e in epochs]
    assert all(e["sequences_per_s"] > 0 and "valid_ndcg_at_10" in e for e in epochs)
    relevant = [np.array([t]) for t in targets]
    ndcg = ndcg_at_k(model.score(histories), relevant)
    popularity = create_model("popularity").fit(train)
    baseline = ndcg_at_k(popularity.score(histories), relevant)
    assert ndcg > 0.8, f"a chain's next item is certain; got NDCG@10 {ndcg:.3f}"
    assert ndcg > 2 * baseline


def test_early_stopping_keeps_the_best_validation_epoch(
    chains: tuple[Interactions, Interactions, list[IntArray], IntArray],
) -> None:
    train, valid, _, _ = chains
    epochs: list[dict[str, float]] = []
    config = {**SMALL, "max_epochs": 6, "patience": 1, "dropout": 0.5}
    model = create_model("sasrec", config).fit(train, valid, CONTEXT, lambda _, m: epochs.append(m))
    best = max(e["valid_ndcg_at_10"] for e in epochs)
    valid_histories = train.histories()
    relevant = [np.unique(v) for v in valid.histories()]
    assert ndcg_at_k(model.score(valid_histories), relevant) == pytest.approx(best, abs=1e-9)
    scores = [e["valid_ndcg_at_10"] for e in epochs]
    assert isinstance(model, SASRecRecommender) and model.best_epoch == 1 + scores.index(best)
    refit = model.refit_config()
    assert refit.max_epochs == model.best_epoch, "the refit on train + valid runs the best epoch count"
    assert refit.model_copy(update={"max_epochs": config["max_epochs"]}) == model.config
    if len(epochs) < config["max_epochs"]:  # stopped early: only after `patience` epochs without progress
        assert scores[-1] <= max(scores[:-1]), scores


def test_save_load_gives_identical_scores_with_item_features(
    chains: tuple[Interactions, Interactions, list[IntArray], IntArray], tmp_path: Path
) -> None:
    train, _, histories, _ = chains
    categories = np.arange(N_CHAIN_ITEMS, dtype=np.int64) // 10
    categories[0] = -1  # unknown
    data = replace(train, item_features={"category_idx": categories})
    model = SASRecRecommender(SASRecConfig(**{**SMALL, "max_epochs": 2})).fit(data, ctx=CONTEXT)
    assert model.network is not None and "category_idx" in model.network.feature_embeddings
    model.save(tmp_path)
    loaded = load_model(tmp_path)
    assert isinstance(loaded, SASRecRecommender)
    np.testing.assert_array_equal(loaded.score(histories), model.score(histories))
    assert loaded.network is not None
    codes = loaded.network.state_dict()["feature_codes"]
    np.testing.assert_array_equal(codes[1:].numpy()[:, 0], categories + 1)


def test_item_features_give_items_without_events_a_vector_of_their_kind() -> None:
    """Items 20-29 never occur; item 20 shares its category with the history, item 29 does not."""
    sequences = chain_sequences(200, 8)
    sequences = [s % 20 for s in sequences]
    categories = np.array([0] * 10 + [1] * 10 + [0] + [1] * 9, dtype=np.int64)
    data = replace(as_interactions(sequences), item_features={"category_idx": categories})
    model = create_model("sasrec", SMALL).fit(data, ctx=CONTEXT)
    scores = model.score([np.arange(3, 8)])  # category-0 items
    assert scores[0, 20] > scores[0, 29]
    plain = SASRecRecommender(SASRecConfig(**SMALL, use_item_features=False)).fit(data, ctx=CONTEXT)
    assert plain.network is not None and len(plain.network.feature_embeddings) == 0


@pytest.mark.parametrize("power", [0.0, 0.75])
def test_sampled_softmax_learns_the_chains(
    chains: tuple[Interactions, Interactions, list[IntArray], IntArray], power: float
) -> None:
    # power 0: uniform negatives; 0.75: popularity-skewed negatives with the log-q correction
    train, valid, histories, targets = chains
    config = {**SMALL, "loss": "sampled_ce", "negatives": 8, "negative_power": power}
    model = create_model("sasrec", config).fit(train, valid, CONTEXT)
    assert ndcg_at_k(model.score(histories), [np.array([t]) for t in targets]) > 0.5


@pytest.mark.parametrize("block", ["pre_ln", "sasrec"])
def test_overlapping_windows_scaled_inputs_oldest_positions_and_random_batches_learn_the_chains(
    chains: tuple[Interactions, Interactions, list[IntArray], IntArray], block: str
) -> None:
    # max_len 4 < the 6 training items per user, so stride 1 makes overlapping windows
    train, valid, histories, targets = chains
    config = {
        **SMALL, "max_len": 4, "window_stride": 1, "input_scale": True, "position_origin": "oldest",
        "target_weighting": "per_target", "length_pool": 1, "block": block,
    }  # fmt: skip
    model = create_model("sasrec", config).fit(train, valid, CONTEXT)
    assert ndcg_at_k(model.score(histories), [np.array([t]) for t in targets]) > 0.8


def test_config_refuses_a_window_stride_longer_than_the_window() -> None:
    with pytest.raises(RecopsError, match="window_stride"):
        create_model("sasrec", {"max_len": 8, "window_stride": 9})
    assert SASRecConfig(max_len=8, window_stride=8).window_stride == 8


def test_config_refuses_heads_that_do_not_divide_the_width() -> None:
    with pytest.raises(RecopsError, match="multiple of num_heads"):
        create_model("sasrec", {"hidden_size": 30, "num_heads": 4})
    assert SASRecConfig(hidden_size=32, num_heads=4).num_heads == 4


def test_interactions_refuse_item_features_of_the_wrong_size() -> None:
    data = as_interactions(chain_sequences(3, 4))
    with pytest.raises(ValueError, match="item_features"):
        replace(data, item_features={"category_idx": np.zeros(N_CHAIN_ITEMS + 1, dtype=np.int64)})
    with pytest.raises(ValueError, match="below -1"):
        replace(data, item_features={"category_idx": np.full(N_CHAIN_ITEMS, -2, dtype=np.int64)})


def test_a_history_longer_than_max_len_reads_only_its_tail(
    chains: tuple[Interactions, Interactions, list[IntArray], IntArray],
) -> None:
    train, _, _, _ = chains
    model = create_model("sasrec", {**SMALL, "max_epochs": 1}).fit(train, ctx=CONTEXT)
    tail = np.arange(10, 18)
    longer = np.concatenate([np.arange(0, 6), tail])
    np.testing.assert_allclose(model.score([longer]), model.score([tail]), rtol=1e-5, atol=1e-6)


def test_two_cpu_fits_with_two_threads_give_byte_identical_weights() -> None:
    """DVC reruns must reproduce dvc.lock: the CPU path uses deterministic kernels (the flash-attention
    backward reduces in thread order otherwise, which changed weights by ~1e-8 from run to run)."""
    import torch

    sequences = chain_sequences(600, 40, seed=1)  # big enough for the threaded kernels to split the work
    train, valid = as_interactions([s[:-1] for s in sequences]), as_interactions([s[-1:] for s in sequences])
    config = SASRecConfig(hidden_size=64, max_len=32, batch_size=64, max_epochs=1)
    context = FitContext(seed=0, threads=2)
    first = SASRecRecommender(config).fit(train, valid, context)._weights()
    second = SASRecRecommender(config).fit(train, valid, context)._weights()
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].tobytes() == second[name].tobytes(), name
    assert not torch.are_deterministic_algorithms_enabled(), "the fit restores the global setting"


def test_bf16_autocast_on_the_cpu_still_learns_the_chains(
    chains: tuple[Interactions, Interactions, list[IntArray], IntArray],
) -> None:
    train, valid, histories, targets = chains
    model = create_model("sasrec", {**SMALL, "cpu_bf16": True}).fit(train, valid, CONTEXT)
    assert isinstance(model, SASRecRecommender) and model.network is not None
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.network.parameters())
    assert ndcg_at_k(model.score(histories), [np.array([t]) for t in targets]) > 0.8


def basket_sequences(n_users: int, length: int, seed: int = 0) -> list[IntArray]:
    """Each user buys again and again from their own 3 items (out of the 30): only repeats can be known."""
    rng = np.random.default_rng(seed)
    return [rng.choice(rng.choice(N_CHAIN_ITEMS, 3, replace=False), length) for _ in range(n_users)]


@pytest.mark.parametrize("loss", ["full_ce", "sampled_ce"])
def test_the_repeat_head_learns_that_shoppers_buy_their_own_items_again(loss: str) -> None:
    sequences = basket_sequences(300, 10)
    train = as_interactions([s[:-2] for s in sequences])
    valid = as_interactions([s[-2:-1] for s in sequences])
    histories, relevant = [s[:-1] for s in sequences], [np.array([s[-1]]) for s in sequences]
    config = {
        **SMALL, "loss": loss, "negatives": 8, "repeat_head": True, "collapse_repeats": False,
        "max_epochs": 6,
    }  # fmt: skip
    model = create_model("sasrec", config).fit(train, valid, CONTEXT)
    assert isinstance(model, SASRecRecommender) and model.network is not None
    ndcg = ndcg_at_k(model.score(histories), relevant)
    popularity = ndcg_at_k(create_model("popularity").fit(train).score(histories), relevant)
    # the target is one of the 3 items in the window: an ideal ranking scores 0.5 + 0.63 / 3 + 0.5 / 3 ~ 0.71
    assert ndcg > 0.6 and ndcg > 3 * popularity, (ndcg, popularity)
    assert float(model.network.repeat_recency.detach().mean()) > 0, "items in the window must be lifted"


def test_window_negatives_keep_one_column_per_earlier_item_and_mask_drawn_items_in_the_window() -> None:
    import torch

    from models.sasrec import window_negatives

    tokens = torch.tensor([[0, 3, 5, 3, 7, 5]])  # items (token - 1): _, 2, 4, 2, 6, 4
    rows, cols, wanted = torch.tensor([0, 0, 0]), torch.tensor([3, 4, 5]), torch.tensor([6, 2, 4])
    keep, in_window = window_negatives(tokens, rows, cols, wanted, torch.tensor([1, 2, 4, 8]), 10)
    # position 3: items 4 (column 2) and 2 (its last occurrence, column 3); the target 6 is not in it
    # position 4: the target 2 is not its own negative; 6 (column 4) joins; position 5: target 4 dropped
    assert keep.int().tolist() == [[0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 1, 0]]
    # drawn items 2 and 4 are in every window (or the target): scored in the window, not twice
    assert in_window.int().tolist() == [[0, 1, 1, 0]] * 3


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_early_stopping_ranks_validation_as_the_evaluation_does_when_it_filters_seen_items(
    exclude_seen: bool,
) -> None:
    # every validation target is one of the shopper's own earlier items: filtered out, none can be found
    sequences = basket_sequences(100, 8)
    train = as_interactions([s[:-1] for s in sequences])
    repeats = [s[-1:] if s[-1] in s[:-1] else s[:1] for s in sequences]  # a seen item each
    valid = as_interactions(repeats)
    config = {**SMALL, "max_epochs": 2, "repeat_head": True, "collapse_repeats": False}
    epochs: list[dict[str, float]] = []
    ctx = FitContext(seed=0, threads=1, exclude_seen=exclude_seen)
    create_model("sasrec", config).fit(train, valid, ctx, lambda _, m: epochs.append(m))
    ndcg = epochs[-1]["valid_ndcg_at_10"]
    assert (ndcg == 0.0) if exclude_seen else (ndcg > 0.3), ndcg
