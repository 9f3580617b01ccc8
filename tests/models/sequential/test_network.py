"""The network's scoring modes agree: full catalogue, candidate subsets and each position's own item."""

from __future__ import annotations

import torch

from models.sequential.network import NetworkShape, SASRecNetwork


def small_network(position_origin: str = "newest", input_scale: bool = False) -> SASRecNetwork:
    torch.manual_seed(0)
    shape = NetworkShape(
        n_items=40, hidden_size=16, num_blocks=1, num_heads=2, max_len=6, dropout=0.0,
        ffn_multiplier=1, input_scale=input_scale, position_origin=position_origin, feature_sizes={},
    )  # fmt: skip
    return SASRecNetwork(shape).eval()


def test_candidate_and_own_scores_are_columns_of_the_full_scores() -> None:
    net = small_network()
    tokens = torch.tensor([[0, 0, 3, 7, 9, 2], [5, 6, 7, 8, 9, 10]])
    positions = torch.tensor([[0, 3], [0, 5], [1, 0], [1, 4]])
    own = torch.tensor([6, 1, 39, 6])
    candidates = torch.tensor([0, 6, 17, 39])
    with torch.no_grad():
        full = net(tokens, positions)  # (N, I)
        subset = net(tokens, positions, candidates)  # (N, C)
        paired = net(tokens, positions, candidates, own)  # (N, 1 + C)
    assert full.shape == (4, 40) and subset.shape == (4, 4) and paired.shape == (4, 5)
    torch.testing.assert_close(subset, full[:, candidates])
    torch.testing.assert_close(paired[:, 1:], subset)
    torch.testing.assert_close(paired[:, 0], full[torch.arange(4), own])


def test_positions_from_the_oldest_item_give_a_prefix_the_same_state_inside_a_longer_window() -> None:
    """Training reads a prefix inside its window, scoring reads it alone: with ``oldest`` they agree."""
    sequence = torch.tensor([[0, 4, 9, 2, 31, 7]])  # left-padded window, 5 items
    for origin, same in (("oldest", True), ("newest", False)):
        net = small_network(origin, input_scale=True)
        with torch.no_grad():
            vectors = net.item_vectors()
            whole = net.encode(sequence, vectors)  # (1, 6, d)
            prefix = torch.tensor([[0, 0, 0, 4, 9, 2]])  # the first 3 items alone, left-padded
            alone = net.encode(prefix, vectors)
        assert torch.allclose(whole[0, 3], alone[0, -1], atol=1e-5) is same, origin


def test_cropping_padding_columns_keeps_the_states_with_positions_from_the_oldest_item() -> None:
    net = small_network("oldest")
    tokens = torch.tensor([[0, 0, 0, 3, 7, 9], [0, 0, 5, 6, 7, 8]])
    with torch.no_grad():
        vectors = net.item_vectors()
        full = net.encode(tokens, vectors)
        cropped = net.encode(tokens[:, 2:], vectors)
    torch.testing.assert_close(cropped, full[:, 2:])
