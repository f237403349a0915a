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
