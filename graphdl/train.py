"""The fit loop: epochs over a DataLoader with a progress bar, validation, metrics, callbacks and History
(``graphdl.history``).

Everything is reported by name: the training objective under ``Executable.objective`` (``history["loss"]``
is an alias for it), every other scalar output (a monitor) under its own name, each metric under its
name, and validation values with a ``val_`` prefix.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from graphdl import distributed
from graphdl.data import DataLoader
from graphdl.errors import GraphDLError, NonFiniteError, choice, file_path, flag, whole_number
from graphdl.executable import Executable
from graphdl.history import History
from graphdl.ir import ancestors
from graphdl.metrics import Metric, get

MetricSpec = Sequence["str | Metric"] | Mapping[str, Sequence["str | Metric"]] | None


class ProgressBar(tqdm):
    """A tqdm bar without tqdm's monitor thread: that thread outlives every bar (it would run, and allocate,
    for the rest of the process), and a bar updated on every batch does not need it."""

    monitor_interval = 0


# -- which output and which target each metric reads --------------------------------------------
def _resolve(exe: Executable, names: Sequence[str], spec: MetricSpec,
             targets: Mapping[str, str] | None) -> list[tuple[str, int, Metric, str]]:
    """(output name, index of the target array in ``names``, metric, history key) per metric."""
    if isinstance(spec, str | Metric):
        spec = [spec]
    if spec is not None and not isinstance(spec, Mapping | list | tuple):
        raise GraphDLError(f"metrics are a list of names or gd.metrics objects (or a dict output -> list), got "
                           f"{spec!r:.40}")
    if not spec:
        return []
    per_sample = [o for o in exe.outputs if exe.nodes[o].shape != ()]
    if isinstance(spec, Mapping):
        chosen = dict(spec)
        for o in chosen:
            if o not in exe.outputs:
                raise GraphDLError(f"metrics for '{o}': not an output of '{exe.name}'; its outputs are "
                                   f"{list(exe.outputs)}")
    else:
        if len(per_sample) != 1:
            what = (f"outputs {per_sample} all have one row per sample; say which with metrics={{'{per_sample[0]}': "
                    f"[...]}}" if per_sample else
                    f"'{exe.name}' has only scalar outputs {list(exe.outputs)}; compile the predictions too, e.g. "
                    "gd.compile([loss, logits], optimizer=...)")
            raise GraphDLError(f"cannot tell which output the metrics {[str(m) for m in spec]} score: {what}")
        chosen = {per_sample[0]: list(spec)}
    bound = []
    for output, metrics in chosen.items():
        if targets and output in targets:
            target = targets[output]
            if target not in names:
                raise GraphDLError(f"targets['{output}'] = '{target}' is not among the fed arrays {list(names)}")
        else:
            feeding = ancestors(exe.nodes, output)
            candidates = [n for n in names if n not in feeding]
            if len(candidates) != 1:
                raise GraphDLError(f"cannot tell which array holds the targets for '{output}': candidates "
                                   f"{candidates} (fed arrays {list(names)}); pass targets={{'{output}': NAME}}")
            target = candidates[0]
        for m in metrics:
            metric = get(m)
            key = metric.name if len(chosen) == 1 else f"{output}/{metric.name}"
            bound.append((output, names.index(target), metric, key))
    return bound


class _Tracker:
    """Averages scalar outputs (weighted by batch size) and streams metrics over one epoch."""

    def __init__(self, exe: Executable, names: Sequence[str], spec: MetricSpec,
                 targets: Mapping[str, str] | None) -> None:
        self.exe, self.names = exe, list(names)
        self.scalars = [(i, o) for i, o in enumerate(exe.outputs) if exe.nodes[o].shape == ()]
        self.metrics = _resolve(exe, self.names, spec, targets)
        self.feed_names = [n for n in self.names if n in exe.known_inputs]
        self.reset()

    def reset(self) -> None:
        self.sums = {o: 0.0 for _, o in self.scalars}
        self.seen = 0
        for _, _, m, _ in self.metrics:
            m.reset()

    def feeds(self, batch: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {n: a for n, a in zip(self.names, batch) if n in self.feed_names}

    def update(self, outs: Sequence[np.ndarray], batch: Sequence[np.ndarray]) -> None:
        n = len(batch[0])
        for i, o in self.scalars:
            self.sums[o] += float(outs[i]) * n
        self.seen += n
        for output, t, metric, _ in self.metrics:
            metric.update(outs[self.exe.outputs.index(output)], batch[t])

    def result(self, prefix: str = "") -> dict[str, float]:
        logs = {prefix + o: s / self.seen for o, s in self.sums.items()} if self.seen else {}
        if self.seen:
            logs.update({prefix + key: m.result() for _, _, m, key in self.metrics})
        return logs


def evaluate(model: Executable, *arrays: np.ndarray, metrics: MetricSpec = ("accuracy",),
             inputs: Sequence[str] | None = None, targets: Mapping[str, str] | None = None,
             batch_size: int = 256) -> dict[str, float]:
    """Scalar outputs (e.g. the loss) averaged over the data and ``metrics`` by name, e.g.
    ``evaluate(gd.compile([loss, logits]), x, y, metrics=["accuracy", "f1"])``.

    ``arrays`` are fed in the order of ``inputs`` (default: the model's inputs, plus a final target array
    when there is one more array than inputs). Which output a metric scores and which array holds its
    targets are inferred when unambiguous, else named with ``metrics={output: [...]}`` and ``targets=``.
    """
    if not isinstance(model, Executable):
        raise GraphDLError(f"evaluate takes a compiled model, e.g. gd.evaluate(gd.compile([loss, logits]), x, y), "
                           f"got {type(model).__name__}")
    names = _input_names(inputs, model)
    if inputs is None and len(arrays) == len(names) + 1:
        names.append("<targets>")
    if len(names) != len(arrays):
        raise GraphDLError(f"evaluate got {len(arrays)} arrays for the inputs {names}; pass inputs=[...] to name them")
    tracker = _Tracker(model, names, metrics, targets)
    for batch in DataLoader(*arrays, batch_size=batch_size):
        tracker.update(model.run(tracker.feeds(batch), copy=False), batch)
    return tracker.result()


def _input_names(inputs: Sequence[str] | None, model: Executable) -> list[str]:
    """``inputs`` (names of the fed placeholders, in the order of the arrays) or the model's inputs."""
    if inputs is None:
        return list(model.inputs)
    if not isinstance(inputs, list | tuple) or not all(isinstance(i, str) for i in inputs):
        raise GraphDLError(f"inputs names the fed placeholders in order, e.g. inputs=['x', 'y'], got {inputs!r:.60}")
    return list(inputs)


def nonfinite_values(exe: Executable) -> list[str]:
    """Names of the parameters and state arrays that hold NaN or infinity (empty: safe to save)."""
    return [k for k, v in exe.values.items() if np.issubdtype(v.dtype, np.inexact) and not np.all(np.isfinite(v))]


def save_if_finite(exe: Executable, path: str | os.PathLike[str]) -> bool:
    """Save ``exe`` (atomically, through ``Executable.save``) unless a value is non-finite; then warn, keep the
    old file and return False."""
    bad = nonfinite_values(exe)
    if bad:
        warnings.warn(f"not saving '{os.fspath(path)}': non-finite values in {bad[:5]}; the previous file is kept",
                      RuntimeWarning, stacklevel=3)
        return False
    exe.save(os.fspath(path))
    return True


def _validation_parts(validation: Any, train: Executable, names: Sequence[str],
                      batch_size: int) -> tuple[Executable, DataLoader]:
    if not isinstance(validation, tuple | list) or not validation:
        raise GraphDLError("validation must be (x, y, ...) arrays in the order of the fed inputs "
                           f"{list(names)}, a DataLoader, or (executable, arrays or DataLoader)")
    if isinstance(validation[0], Executable):
        exe, rest = validation[0], tuple(validation[1:])
        if exe.training:
            raise GraphDLError(f"the validation executable '{exe.name}' trains (it has update nodes); compile it "
                               "without an optimizer: gd.compile([loss, logits])")
    else:
        # The training plan's own outputs, in inference mode, sharing its parameters and state.
        exe, rest = train.inference(list(train.outputs)), tuple(validation)
    if len(rest) == 1 and isinstance(rest[0], DataLoader):
        return exe, rest[0]
    if len(rest) != len(names):
        raise GraphDLError(f"validation has {len(rest)} arrays but the fed inputs are {list(names)}")
    return exe, DataLoader(*rest, batch_size=batch_size)


def fit(train: Executable, loader: DataLoader, *, epochs: int = 1, initial_epoch: int = 0,
        inputs: Sequence[str] | None = None, metrics: MetricSpec = None, targets: Mapping[str, str] | None = None,
        validation: Any = None, callbacks: Sequence[Any] = (), checkpoint: str | os.PathLike[str] | None = None,
        on_nonfinite: str = "stop", history: History | None = None, progress: bool = True) -> History:
    """Train from epoch ``initial_epoch + 1`` to epoch ``epochs`` (Keras's numbering); each batch is one
    ``train.run``. A loader that has yielded fewer than ``initial_epoch`` epochs (a new one, after a
    resume) starts at that epoch (``DataLoader.set_epoch``), so a resumed run sees the batches an
    uninterrupted one would; otherwise the loader goes on with its own next epoch.

    ``inputs`` names the placeholders fed by the loader's arrays, in order (default: the training
    executable's inputs). ``metrics`` (names or ``gd.metrics`` objects; a dict ``{output: [...]}`` to say
    which output they score) are computed on the training batches and the validation data;
    ``targets={output: input}`` names the array holding their targets when that is not clear.
    ``validation`` is ``(x, y, ...)`` arrays or a DataLoader, run through the inference plan of the
    training outputs (``train.inference``: no dropout, BatchNorm's running statistics); or
    ``(executable, *arrays)`` / ``(executable, DataLoader)`` with an inference executable of your own.
    Its scalar outputs (the validation loss) and the metrics are reported with a ``val_`` prefix.
    ``callbacks`` follow ``graphdl.callbacks.Callback``.
    ``checkpoint`` saves the training model after each epoch (never with non-finite values).

    A non-finite objective stops training with ``NonFiniteError`` naming the epoch and step
    (``on_nonfinite="stop"``), or skips that batch without changing the model (``"skip"``).
    ``history`` continues an earlier History (after a resume).
    """
    if not isinstance(train, Executable) or not train.training:
        raise GraphDLError("fit needs a training executable: gd.compile([loss], optimizer=...)")
    if not isinstance(loader, DataLoader):
        raise GraphDLError(f"fit takes its data as a gd.data.DataLoader, e.g. gd.fit(train, gd.data.DataLoader(x, y, "
                           f"batch_size=32)), got {type(loader).__name__}")
    on_nonfinite = choice(on_nonfinite, "fit: on_nonfinite", ("stop", "skip"))
    progress = flag(progress, "fit: progress")
    epochs, initial_epoch = whole_number(epochs, "epochs"), whole_number(initial_epoch, "initial_epoch")
    if not isinstance(callbacks, Sequence) or not all(callable(getattr(cb, "set_context", None)) for cb in callbacks):
        raise GraphDLError(f"callbacks must be a list of gd.callbacks.Callback objects (e.g. [gd.callbacks."
                           f"EarlyStopping()]), got {callbacks!r:.80}")
    if initial_epoch < 0 or epochs < initial_epoch:
        raise GraphDLError(f"epochs ({epochs}) is the last epoch's number and must be >= initial_epoch "
                           f"({initial_epoch}) >= 0")
    names = _input_names(inputs, train)
    if checkpoint is not None:
        checkpoint = file_path(checkpoint, "fit: checkpoint")
    if history is not None and not isinstance(history, History):
        raise GraphDLError(f"history continues a History that fit returned, got {type(history).__name__}")
    if len(names) != len(loader.arrays):
        raise GraphDLError(f"the loader yields {len(loader.arrays)} arrays but inputs are {names}")
    # Under mpiexec: this rank's shard; the bar, checkpoints and file-writing callbacks on rank 0 only.
    dist, loader = distributed.for_fit(train, loader, on_nonfinite)
    lead = dist is None or dist.rank == 0
    progress = progress and lead
    tracker = _Tracker(train, names, metrics, targets)
    val = None
    if validation is not None:
        if isinstance(validation, DataLoader):
            validation = (validation,)
        val_exe, val_loader = _validation_parts(validation, train, names, loader.batch_size)
        val = (_Tracker(val_exe, names, metrics, targets), val_loader)
    history = history if history is not None else History(objective=train.objective)
    history.objective = history.objective or train.objective
    objective = train.outputs.index(train.objective) if train.objective in train.outputs else None
    callbacks = [cb for cb in callbacks if lead or not getattr(cb, "rank_zero_only", False)]
    for cb in callbacks:
        cb.set_context(train, history)
    for cb in callbacks:
        cb.on_train_begin({"initial_epoch": initial_epoch, "epochs": epochs})
    logs: dict[str, float] = {}
    if loader.epoch < initial_epoch:
        loader.set_epoch(initial_epoch)
    try:
        for epoch in range(initial_epoch + 1, epochs + 1):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {})
            tracker.reset()
            skipped = 0
            with ProgressBar(total=len(loader), desc=f"epoch {epoch}/{epochs}", disable=not progress,
                              unit="batch") as bar:
                for step, batch in enumerate(loader, start=1):
                    applied = False
                    try:
                        # Executable.run refuses a step whose objective (or a feed) is non-finite before any
                        # update: the model is unchanged, so the batch can be skipped.
                        outs = train.run(tracker.feeds(batch), copy=False)
                        value = float(outs[objective]) if objective is not None else 0.0
                        if not math.isfinite(value):  # not refused by run: the update may have been applied
                            applied = True
                            raise NonFiniteError(f"objective '{train.objective}' is {value}")
                    except NonFiniteError as e:
                        message = (f"non-finite training objective at epoch {epoch}, step {step} (batch of "
                                   f"{len(batch[0])}): {e}")
                        if on_nonfinite == "stop" or applied:
                            raise NonFiniteError(message + "; check the inputs and the learning rate, or pass "
                                                 "on_nonfinite='skip' to skip such batches") from e
                        warnings.warn(message + "; batch skipped", RuntimeWarning, stacklevel=2)
                        skipped += 1
                        bar.update(1)
                        continue
                    tracker.update(outs, batch)
                    logs = tracker.result()
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
                    for cb in callbacks:
                        cb.on_batch_end(step, {**logs, "batch_objective": value})
                    if any(cb.stop_training for cb in callbacks):
                        break
                if val is not None:
                    val_tracker, val_loader = val
                    val_tracker.reset()
                    for vb in val_loader:
                        val_tracker.update(val_tracker.exe.run(val_tracker.feeds(vb), copy=False), vb)
                    logs.update(val_tracker.result("val_"))
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
            logs = distributed.average(dist, logs)
            record = {"epoch": epoch, **logs, "lr": learning_rate(train)}
            if skipped:
                record["skipped_batches"] = skipped
            history.epochs.append(record)
            for cb in callbacks:  # one dict for every callback, as in Keras: values a callback adds are recorded
                cb.on_epoch_end(epoch, record)
            if checkpoint is not None and lead:
                save_if_finite(train, checkpoint)
            if any(cb.stop_training for cb in callbacks):
                break
    finally:
        # Every kind of end (epochs ran out, a callback stopped, an error): callbacks such as EarlyStopping
        # restore their best weights here.
        for cb in callbacks:
            cb.on_train_end({"epochs_done": len(history.epochs)})
    return history


# -- the learning rate of a compiled plan -----------------------------------------------------
def _lr_nodes(exe: Executable) -> list[Any]:
    nodes = [n for n in exe.ir.nodes if n.op == "learning_rate"]
    if not nodes:
        raise GraphDLError(f"'{exe.name}' has no learning-rate node; compile it with an optimizer")
    return nodes


def learning_rate(exe: Executable) -> float:
    """The learning rate the next step of a training executable uses (its schedule at the step counter).

    With several learning-rate nodes (parameter groups), the first one's.
    """
    from graphdl.ops.updates import schedule_value

    node = _lr_nodes(exe)[0]
    t = exe.values.get(node.inputs[0])
    return float(schedule_value(node.attr, int(t) if t is not None else 0))


def set_learning_rate_attrs(exe: Executable, change: Any) -> None:
    """Replace the attributes of every ``learning_rate`` node by ``change(node) -> attrs`` and drop the bound
    plans so the next run uses them. The attributes are saved with the model, so a resume keeps them."""
    from graphdl.ir import make_attrs

    new = {n.name: make_attrs(change(n)) for n in _lr_nodes(exe)}
    nodes = tuple(n if n.name not in new else _replace_attrs(n, new[n.name]) for n in exe.ir.nodes)
    exe.ir = exe.ir.replace(nodes=nodes)
    exe.nodes = exe.ir.node_map()
    exe._plans.clear()  # kernels read their attributes when bound


def _replace_attrs(node: Any, attrs: Any) -> Any:
    import dataclasses

    return dataclasses.replace(node, attrs=attrs)


def scale_learning_rate(exe: Executable, factor: float) -> None:
    """Multiply the base learning rate of every learning-rate node (every parameter group, schedules kept)."""
    if not factor > 0:
        raise GraphDLError(f"the learning-rate factor must be > 0, got {factor}")
    set_learning_rate_attrs(exe, lambda n: {**n.attr, "lr": n.attr["lr"] * factor})


def set_learning_rate(exe: Executable, lr: float) -> None:
    """Set the base learning rate of a training executable (its schedule, if any, scales from it)."""
    if not lr > 0:
        raise GraphDLError(f"the learning rate must be > 0, got {lr}")
    set_learning_rate_attrs(exe, lambda n: {**n.attr, "lr": float(lr)})
