"""Loss layers: each adds one node of kind ``loss`` whose value is a scalar objective."""

from __future__ import annotations

from graphdl.graph import Tensor, current_graph
from graphdl.ir import NodeKind


class Loss:
    """Base of all losses: ``loss(prediction, target)`` adds one loss node."""

    op: str = ""

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        g = current_graph() if not isinstance(prediction, Tensor) else prediction.graph
        name = self.name or g.fresh(self.op)
        return g.apply(self.op, [prediction, target], {}, name=name, kind=NodeKind.LOSS)


class SoftmaxCrossEntropy(Loss):
    """Mean over the batch of the cross-entropy of softmax(logits) against integer labels."""

    op = "softmax_cross_entropy"


class MSE(Loss):
    """Mean squared error over all elements."""

    op = "mse"
