"""The benchmark models, built the same way for every framework."""

from __future__ import annotations

import numpy as np

MLP_SIZES = (784, 1024, 1024, 10)
MLP_BATCH = 256
LR = 0.01


def mlp_data(batch: int = MLP_BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, MLP_SIZES[0]), dtype=np.float32), rng.integers(0, MLP_SIZES[-1], batch)


def graphdl_mlp(optimizer=None):
    """(executable, x, y) for one training step of the MLP with plain SGD."""
    import graphdl as gd

    with gd.Graph("mlp", seed=0):
        x = gd.placeholder("x", (None, MLP_SIZES[0]))
        y = gd.placeholder("y", (None,), dtype="int64")
        h = x
        for k in range(len(MLP_SIZES) - 1):
            h = gd.layers.Linear(MLP_SIZES[k], MLP_SIZES[k + 1], name=f"fc{k}")(h)
            if k < len(MLP_SIZES) - 2:
                h = gd.layers.ReLU(name=f"relu{k}")(h)
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(h, y)
    return gd.compile([loss], optimizer or gd.optim.SGD(LR)), x, y


def torch_mlp():
    """(model, optimizer, step function) for PyTorch eager."""
    import torch

    layers = []
    for k in range(len(MLP_SIZES) - 1):
        layers.append(torch.nn.Linear(MLP_SIZES[k], MLP_SIZES[k + 1]))
        if k < len(MLP_SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step(x, y):
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


def jax_mlp():
    """(params, jitted step) for JAX: the whole SGD step compiled by XLA."""
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params = []
    for k in range(len(MLP_SIZES) - 1):
        key, sub = jax.random.split(key)
        bound = 1 / np.sqrt(MLP_SIZES[k])
        w = jax.random.uniform(sub, (MLP_SIZES[k], MLP_SIZES[k + 1]), jnp.float32, -bound, bound)
        params.append((w, jnp.zeros(MLP_SIZES[k + 1], jnp.float32)))

    def loss_fn(params, x, y):
        h = x
        for k, (w, b) in enumerate(params):
            h = h @ w + b
            if k < len(params) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), loss

    return params, step


CNN_BATCH = 64


def cnn_data(batch: int = CNN_BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch)


def _graphdl_cnn_logits():
    """conv32-pool-conv64-pool-dense10 (3x3 convolutions, padding 1, ReLU, 2x2 max pooling)."""
    import graphdl as gd
    from graphdl import layers

    x = gd.placeholder("x", (None, 1, 28, 28))
    h = layers.Conv2D(1, 32, 3, padding=1, name="conv1")(x)
    h = layers.MaxPool2D(2, name="pool1")(layers.ReLU(name="relu1")(h))
    h = layers.Conv2D(32, 64, 3, padding=1, name="conv2")(h)
    h = layers.MaxPool2D(2, name="pool2")(layers.ReLU(name="relu2")(h))
    return x, layers.Linear(64 * 7 * 7, 10, name="fc")(layers.Flatten(name="flatten")(h))


def graphdl_cnn():
    """(executable, x, y) for one training step of the CNN with plain SGD."""
    import graphdl as gd

    with gd.Graph("cnn", seed=0):
        x, logits = _graphdl_cnn_logits()
        y = gd.placeholder("y", (None,), dtype="int64")
        loss = gd.losses.SoftmaxCrossEntropy(name="loss")(logits, y)
    return gd.compile([loss], gd.optim.SGD(LR)), x, y


def graphdl_cnn_inference():
    """(executable, x): the CNN's logits, inference plan."""
    import graphdl as gd

    with gd.Graph("cnn", seed=0):
        x, logits = _graphdl_cnn_logits()
    return gd.compile([logits]), x


def torch_cnn_model():
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 10))


def torch_cnn():
    import torch
    from torch import nn

    model = torch_cnn_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step(x, y):
        opt.zero_grad(set_to_none=False)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _jax_cnn_parts():
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    params = (jax.random.normal(k1, (32, 1, 3, 3)) * 0.3, jnp.zeros(32),
              jax.random.normal(k2, (64, 32, 3, 3)) * 0.06, jnp.zeros(64),
              jax.random.normal(k3, (64 * 7 * 7, 10)) * 0.02, jnp.zeros(10))

    def conv(x, w, b):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def logits_fn(p, x):
        h = pool(jax.nn.relu(conv(x, p[0], p[1])))
        h = pool(jax.nn.relu(conv(h, p[2], p[3])))
        return h.reshape(h.shape[0], -1) @ p[4] + p[5]

    def loss_fn(p, x, y):
        logits = logits_fn(p, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    return params, logits_fn, loss_fn


def jax_cnn():
    """(params, jitted SGD step) for the CNN."""
    import jax

    params, _, loss_fn = _jax_cnn_parts()

    @jax.jit
    def step(p, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        return jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grads), loss

    return params, step


def jax_cnn_inference():
    """(params, jitted forward) for the CNN's logits."""
    import jax

    params, logits_fn, _ = _jax_cnn_parts()
    return params, jax.jit(logits_fn)


CHAIN_OPS = 200
CHAIN_SHAPE = (64, 64)


def chain_data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(CHAIN_SHAPE, dtype=np.float32)


def chain_op(k: int) -> tuple[str, float]:
    """The k-th op of the chain: alternately multiply by and add a constant (values stay bounded)."""
    return ("mul", 0.999) if k % 2 == 0 else ("add", 0.001)


def graphdl_chain():
    """(executable, x): CHAIN_OPS chained elementwise ops, inference plan."""
    import graphdl as gd

    with gd.Graph("chain"):
        h = x = gd.placeholder("x", CHAIN_SHAPE)
        for k in range(CHAIN_OPS):
            op, c = chain_op(k)
            h = h * c if op == "mul" else h + c
    return gd.compile([h]), x
