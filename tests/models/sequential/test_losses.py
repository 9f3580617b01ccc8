"""The full-softmax cross-entropy with the in-place backward against torch's own cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.sequential.losses import softmax_cross_entropy


def _pair(
    n: int = 37, items: int = 211, spread: float = 4.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, items, generator=gen) * spread
    targets = torch.randint(0, items, (n,), generator=gen)
    return scores, targets


@pytest.mark.parametrize("spread", [0.1, 4.0, 40.0])
def test_losses_and_gradient_match_torch_cross_entropy(spread: float) -> None:
    scores, targets = _pair(spread=spread)
    weights = torch.rand(len(targets), generator=torch.Generator().manual_seed(1))  # uneven upstream grad
    ours_in = scores.clone().requires_grad_(True)
    ref_in = scores.clone().requires_grad_(True)

    ours = softmax_cross_entropy(ours_in, targets)
    ref = F.cross_entropy(ref_in, targets, reduction="none")
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()

    assert ours.shape == (len(targets),)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-5, atol=1e-7)


def test_mean_reduction_gradient_rows_sum_to_zero() -> None:
    scores, targets = _pair()
    x = scores.clone().requires_grad_(True)
    softmax_cross_entropy(x, targets).mean().backward()
    # softmax - one_hot sums to zero in every row; the target column is the only negative entry
    torch.testing.assert_close(x.grad.sum(dim=1), torch.zeros(len(targets)), rtol=0, atol=1e-6)
    assert bool((x.grad[torch.arange(len(targets)), targets] < 0).all())


def test_an_underflowed_target_probability_still_gives_the_exact_loss() -> None:
    scores = torch.tensor([[0.0, -200.0, 5.0]], requires_grad=True)
    targets = torch.tensor([1])
    loss = softmax_cross_entropy(scores, targets)
    loss.sum().backward()
    # softmax(scores)[1] is 0 in float32; the loss is still logsumexp - s[1] = 205.0067..., not inf
    torch.testing.assert_close(loss, F.cross_entropy(scores.detach(), targets, reduction="none"))
    assert 205.0 < float(loss.detach()[0]) < 205.1
    ref = torch.softmax(scores.detach(), dim=1)
    ref[0, 1] -= 1.0
    torch.testing.assert_close(scores.grad, ref)


def test_a_second_backward_through_the_same_graph_is_refused() -> None:
    scores, targets = _pair(n=4, items=9)
    x = scores.clone().requires_grad_(True)
    loss = softmax_cross_entropy(x, targets).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()


def test_shapes_are_checked() -> None:
    scores, targets = _pair(n=5, items=7)
    with pytest.raises(ValueError, match=r"scores \(N, I\) and targets \(N,\)"):
        softmax_cross_entropy(scores, targets[:3])
    with pytest.raises(ValueError, match="expected"):
        softmax_cross_entropy(scores[0], targets[:1])
