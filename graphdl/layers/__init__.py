"""Layers: callables that own their parameter nodes and add one node to the graph per call.

A layer is built inside ``with gd.Graph():``; its parameters (``<name>.W``, ``<name>.b``) become
param nodes at construction, initialised from the graph's seeded generator as PyTorch does, and
``layer(x)`` adds one node (named after the layer) that reads ``x`` and the parameters. One file per
family: base, dense, activations, conv (and pooling), norm, dropout, attention, recurrent.
"""

from __future__ import annotations

from graphdl.layers.activations import (
    CELU,
    ELU,
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
)
from graphdl.layers.attention import MultiheadAttention, PositionalEmbedding, SinusoidalPositionalEncoding
from graphdl.layers.base import Layer
from graphdl.layers.conv import AvgPool2D, Conv2D, GlobalAvgPool2D, MaxPool2D, Upsample
from graphdl.layers.conv_more import Conv1D, ConvTranspose2D
from graphdl.layers.dense import Concat, Embedding, Flatten, Linear, Reshape
from graphdl.layers.dropout import Dropout
from graphdl.layers.norm import BatchNorm1D, BatchNorm2D, GroupNorm, InstanceNorm1D, InstanceNorm2D, LayerNorm
from graphdl.layers.recurrent import GRU, LSTM, RNN
from graphdl.layers.transformer import TransformerDecoderLayer, TransformerEncoderLayer

__all__ = [
    "ELU",
    "GELU",
    "AvgPool2D",
    "BatchNorm1D",
    "BatchNorm2D",
    "Concat",
    "Conv2D",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool2D",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool2D",
    "MultiheadAttention",
    "PositionalEmbedding",
    "ReLU",
    "Reshape",
    "SiLU",
    "Sigmoid",
    "SinusoidalPositionalEncoding",
    "Softmax",
    "Softplus",
    "Tanh",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
]
__all__ += ["Conv1D", "ConvTranspose2D"]
__all__ += ["CELU", "SELU", "Hardsigmoid", "Hardswish", "LogSigmoid", "Mish", "ReLU6", "Softsign"]
__all__ += ["GRU", "LSTM", "RNN"]
__all__ += ["GroupNorm", "InstanceNorm1D", "InstanceNorm2D", "Upsample"]
