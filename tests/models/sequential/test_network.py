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


def test_the_repeat_head_lifts_each_earlier_item_by_the_sum_of_its_occurrences_bonuses() -> None:
    torch.manual_seed(0)
    shape = NetworkShape(
        n_items=40, hidden_size=16, num_blocks=1, num_heads=2, max_len=6, dropout=0.0, ffn_multiplier=1,
        input_scale=False, position_origin="newest", feature_sizes={}, repeat_head=True,
    )  # fmt: skip
    net = SASRecNetwork(shape).eval()
    with torch.no_grad():
        net.repeat_recency.copy_(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.25, 0.125]))
    tokens = torch.tensor([[0, 3, 7, 3, 9, 2], [5, 6, 5, 5, 9, 10]])
    positions = torch.tensor([[0, 3], [0, 5], [1, 0], [1, 3]])
    own = torch.tensor([2, 1, 39, 4])  # (token 3 = item 2, in the first window; item 4 = token 5)
    candidates = torch.tensor([0, 2, 17, 39])
    with torch.no_grad():
        vectors = net.item_vectors()
        hidden = net.encode(tokens, vectors)
        full = net(tokens, positions)  # (N, I) with the bonus
        paired = net(tokens, positions, candidates, own)  # (N, 1 + C + L')
    assert paired.shape == (4, 1 + 4 + 6)
    for n, (b, t) in enumerate(positions.tolist()):
        state = hidden[b, t]
        gate = torch.nn.functional.softplus(net.repeat_gate(state))[0]
        expected = state @ vectors[1:].T
        for s in range(t + 1):
            if tokens[b, s] != 0:
                expected[tokens[b, s] - 1] += gate * net.repeat_recency[t - s]
        torch.testing.assert_close(full[n], expected)
        torch.testing.assert_close(paired[n, 0], full[n, own[n]])
        torch.testing.assert_close(paired[n, 1:5], state @ vectors[candidates + 1].T)  # no bonus there
        for s in range(6):  # every window column: its item's full score, bonus included
            if tokens[b, s] != 0:
                torch.testing.assert_close(paired[n, 5 + s], full[n, tokens[b, s] - 1])
    # item 2 (token 3) occurs at columns 1 and 3 of row 0: at position 3 it carries both bonuses
    gate0 = torch.nn.functional.softplus(net.repeat_gate(hidden[0, 3]))[0]
    base = hidden[0, 3] @ vectors[3]
    torch.testing.assert_close(full[0, 2], base + gate0 * (3.0 + 1.0))


def test_the_original_sasrec_block_takes_keys_from_the_raw_stream_and_queries_normalised() -> None:
    torch.manual_seed(0)
    shape = NetworkShape(
        n_items=40, hidden_size=16, num_blocks=1, num_heads=2, max_len=6, dropout=0.0, ffn_multiplier=1,
        input_scale=True, position_origin="oldest", feature_sizes={}, block="sasrec",
    )  # fmt: skip
    net = SASRecNetwork(shape).eval()
    block = net.blocks[0]
    x = torch.randn(2, 6, 16)
    allowed = torch.ones(6, 6, dtype=torch.bool).tril()[None, None].expand(2, 1, 6, 6)
    with torch.no_grad():
        queries = block.attention_norm(x)
        # by hand: separate projections of the normalised queries and the raw keys / values
        weight, bias = block.attention.qkv.weight, block.attention.qkv.bias
        q = (queries @ weight[:16].T + bias[:16]).view(2, 6, 2, 8).transpose(1, 2)
        k = (x @ weight[16:32].T + bias[16:32]).view(2, 6, 2, 8).transpose(1, 2)
        v = (x @ weight[32:].T + bias[32:]).view(2, 6, 2, 8).transpose(1, 2)
        weights = ((q @ k.transpose(-1, -2)) / 8**0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
        attended = block.attention.out((weights @ v).transpose(1, 2).reshape(2, 6, 16))
        stream = block.feed_forward_norm(queries + attended)
        expected = stream + block.feed_forward(stream)
        torch.testing.assert_close(block(x, allowed), expected)
        # the reference's initialisation: N(0, 0.02) weights, zero biases in the blocks
        assert (
            float(block.attention.qkv.weight.std()) < 0.03
            and float(block.attention.qkv.bias.abs().max()) == 0
        )
