"""Full-softmax cross-entropy with a one-pass backward (the sequential families' training loss).

``F.cross_entropy`` over a ``(N, I)`` score matrix runs ``log_softmax``, then ``nll_loss``; its backward
allocates a zero ``(N, I)`` gradient for ``nll_loss``, scatters the targets into it, and runs
``log_softmax``'s backward (another ``exp`` of every entry) over both matrices. With the whole catalogue as
classes those passes are about a quarter of a CPU training step. The gradient is known in closed form,
``(softmax(scores) - one_hot(target)) * grad``, so :class:`SoftmaxCrossEntropy` keeps the probabilities of
its forward and turns them into the gradient in place: a subtraction at the N targets and one scaling pass,
no second ``exp``. Same values as ``F.cross_entropy(scores, targets, reduction="none")`` up to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Per-row ``-log softmax(scores)[target]``; gradient ``(softmax(scores) - one_hot) * grad``.

    The backward consumes the saved probabilities (they become the gradient), so a graph through it can be
    differentiated once: ``retain_graph`` and double backward are refused.
    """

    @staticmethod
    def forward(ctx: Any, scores: Tensor, targets: Tensor) -> Tensor:
        """``scores`` (N, I) float; ``targets`` (N,) class indices -> losses (N,)."""
        probs = torch.softmax(scores, dim=1)  # (N, I)
        rows = torch.arange(len(targets), device=scores.device)
        ctx.save_for_backward(probs, targets)
        ctx.consumed = False
        # -log p[target] = logsumexp - s[target], and logsumexp = s[top] - log p[top] for the top score,
        # whose probability (>= 1 / I) never underflows, so the loss stays exact however small p[target] is
        best, top = scores.max(dim=1)  # (N,) each
        return (best - scores[rows, targets]) - torch.log(probs[rows, top])

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor, None]:
        if ctx.consumed:
            raise RuntimeError("SoftmaxCrossEntropy: backward ran twice (retain_graph is not supported)")
        ctx.consumed = True
        grad, targets = ctx.saved_tensors  # grad: the probabilities, turned into the gradient in place
        rows = torch.arange(len(targets), device=grad.device)
        grad[rows, targets] -= 1.0  # each row's target once: no accumulation needed
        grad.mul_(grads[0][:, None])
        return grad, None


def softmax_cross_entropy(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-row full-softmax cross-entropy (N,), as ``F.cross_entropy(..., reduction="none")`` computes it.

    Args:
        scores: (N, I) logits, float32 (bf16 scores are cast by the caller).
        targets: (N,) int64 class indices in ``[0, I)``.
    """
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(f"scores (N, I) and targets (N,) expected, got {tuple(scores.shape)} and "
                         f"{tuple(targets.shape)}")  # fmt: skip
    losses: Tensor = SoftmaxCrossEntropy.apply(scores, targets)  # type: ignore[no-untyped-call]
    return losses
