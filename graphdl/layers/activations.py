"""Activation layers (ReLU, GELU, Softmax, ...): one elementwise node per call."""

from __future__ import annotations

from typing import Any

from graphdl.errors import GraphError
from graphdl.layers.base import Layer


class _Activation(Layer):
    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)


class LeakyReLU(Layer):
    """x where x > 0, else negative_slope * x."""

    op = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, name: str | None = None) -> None:
        super().__init__(name)
        self.negative_slope = self._number("negative_slope", negative_slope)

    def attrs(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class ELU(Layer):
    """x where x > 0, else alpha * (exp(x) - 1)."""

    op = "elu"

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        super().__init__(name)
        self.alpha = self._number("alpha", alpha)

    def attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class GELU(Layer):
    """x * Phi(x); ``approximate="tanh"`` uses the tanh approximation."""

    op = "gelu"

    def __init__(self, approximate: str = "none", name: str | None = None) -> None:
        approximate = self._choice("approximate", approximate, ("none", "tanh"))
        super().__init__(name)
        self.approximate = approximate

    def attrs(self) -> dict[str, Any]:
        return {"approximate": self.approximate}


class SiLU(_Activation):
    """x * sigmoid(x)."""

    op = "silu"


class Softplus(Layer):
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold."""

    op = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, name: str | None = None) -> None:
        super().__init__(name)
        self.beta, self.threshold = self._number("beta", beta), self._number("threshold", threshold)

    def attrs(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}


class ReLU(_Activation):
    """max(x, 0)."""

    op = "relu"


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow."""

    op = "sigmoid"


class Tanh(_Activation):
    """Hyperbolic tangent."""

    op = "tanh"


class Softmax(Layer):
    """exp(x) / sum(exp(x)) along ``dim`` (default the last axis)."""

    op = "softmax"

    def __init__(self, dim: int = -1, name: str | None = None) -> None:
        super().__init__(name)
        self.dim = dim

    def attrs(self) -> dict[str, Any]:
        return {"axis": self.dim}


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``dim``, without overflow at any magnitude."""

    op = "log_softmax"


class ReLU6(_Activation):
    """min(max(x, 0), 6)."""

    op = "relu6"


class Hardsigmoid(_Activation):
    """min(max(x / 6 + 1/2, 0), 1)."""

    op = "hardsigmoid"


class Hardswish(_Activation):
    """x * min(max(x + 3, 0), 6) / 6."""

    op = "hardswish"


class SELU(_Activation):
    """Scaled ELU with the self-normalising constants (alpha 1.6733, scale 1.0507)."""

    op = "selu"


class CELU(Layer):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""

    op = "celu"

    def __init__(self, alpha: float = 1.0, name: str | None = None) -> None:
        alpha = self._number("alpha", alpha)
        if alpha == 0:
            raise GraphError("CELU: alpha must not be 0")
        super().__init__(name)
        self.alpha = alpha

    def attrs(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


class Mish(_Activation):
    """x * tanh(softplus(x))."""

    op = "mish"


class Softsign(_Activation):
    """x / (1 + |x|)."""

    op = "softsign"


class LogSigmoid(_Activation):
    """log(sigmoid(x)), without overflow."""

    op = "logsigmoid"
