"""Every function of gd.ops, given an argument of the wrong kind, raises a GraphDLError naming it — never
an AttributeError, StopIteration or TypeError from inside graphdl."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import graphdl as gd

#: Arguments of the wrong kind: a string, None, a fraction, a negative number, empty containers, a
#: tuple holding a string, an array.
BAD = ["abc", None, 1.5, -7, [], {}, (1, "a"), np.zeros(3)]
FUNCTIONS = sorted(n for n in dir(gd.ops) if not n.startswith("_") and inspect.isfunction(getattr(gd.ops, n)))


def _calls(fn):
    """(argument name, args, kwargs) with one argument replaced by each BAD value, the required others
    filled with (None, 4, 6) graph nodes."""
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for k, p in enumerate(params):
        for bad in BAD:
            yield p.name, k, bad, params


@pytest.mark.parametrize("name", FUNCTIONS)
def test_wrong_kinds_of_arguments_are_named(name: str) -> None:
    fn = getattr(gd.ops, name)
    checked = 0
    for arg, k, bad, params in _calls(fn):
        with gd.Graph("args", seed=0):
            nodes = [gd.placeholder("x", (None, 4, 6)), gd.placeholder("y", (None, 4, 6))]
            args, kwargs = [], {}
            for j, q in enumerate(params):
                if j != k and q.default is not inspect.Parameter.empty:
                    continue
                value = bad if j == k else nodes[min(j, 1)]
                if q.kind == q.KEYWORD_ONLY:
                    kwargs[q.name] = value
                else:
                    args.append(value)
            try:
                fn(*args, **kwargs)
            except gd.GraphDLError:
                checked += 1
            except TypeError as e:  # Python's own arity errors (a required argument left at its default)
                assert any(s in str(e) for s in ("positional argument", "unexpected keyword", "required")), (
                    f"gd.ops.{name}({arg}={bad!r}): TypeError {e}")
            except Exception as e:  # the point: nothing else may escape
                pytest.fail(f"gd.ops.{name}({arg}={bad!r}) raised {type(e).__name__}: {e}")
    assert checked or name == "to_float", name  # to_float passes non-nodes through by design


#: Good values for the required arguments of the classes below (anything else: 2).
GOOD = {"in_features": 6, "out_features": 3, "in_channels": 4, "out_channels": 4, "kernel_size": 3,
        "num_features": 4, "num_embeddings": 10, "embedding_dim": 4, "input_size": 6, "hidden_size": 4,
        "embed_dim": 6, "num_heads": 2, "d_model": 6, "nhead": 2, "normalized_shape": 6, "max_len": 8,
        "path": "out.gdl", "params": ["fc.W"]}
MODULES = {"layers": gd.layers, "losses": gd.losses, "callbacks": gd.callbacks, "metrics": gd.metrics,
           "optim": gd.optim}
#: Bases that only subclasses complete (their hyperparameters and hooks live there).
BASES = {"Layer", "Loss", "Callback", "Metric", "Optimizer"}
CLASSES = sorted(f"{m}.{n}" for m, mod in MODULES.items() for n in dir(mod)
                 if isinstance(getattr(mod, n), type) and not n.startswith("_") and n not in BASES
                 and not issubclass(getattr(mod, n), BaseException)
                 and getattr(mod, n).__module__.startswith(f"graphdl.{m}"))


@pytest.mark.parametrize("qualname", CLASSES)
def test_constructors_name_arguments_of_the_wrong_kind(qualname: str) -> None:
    module, name = qualname.split(".")
    cls = getattr(MODULES[module], name)
    params = [p for p in inspect.signature(cls).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "name"]
    for k, p in enumerate(params):
        for bad in BAD:
            kwargs = {q.name: bad if j == k else GOOD.get(q.name, 2) for j, q in enumerate(params)
                      if j == k or q.default is inspect.Parameter.empty}
            try:
                with gd.Graph("args", seed=0):
                    cls(**kwargs)
            except gd.GraphDLError:
                pass
            except Exception as e:  # the point: nothing else may escape
                pytest.fail(f"{qualname}({p.name}={bad!r}) raised {type(e).__name__}: {e}")


def _trained_mlp():
    g = gd.Graph("args", seed=0)
    with g:
        x = gd.placeholder("x", (None, 8))
        y = gd.placeholder("y", (None,), dtype="int64")
        logits = gd.layers.Linear(8, 3, name="fc")(x)
        loss = gd.losses.SoftmaxCrossEntropy()(logits, y)
    return g, logits, loss


def test_top_level_functions_and_model_methods_name_arguments_of_the_wrong_kind(tmp_path, monkeypatch) -> None:
    """gd.compile, gd.fit, gd.evaluate, gd.grad, gd.placeholder, gd.load, ..., and every public method of a
    compiled model, with each argument replaced by eight wrong kinds: GraphDLErrors only."""
    monkeypatch.chdir(tmp_path)  # "abc" is a fine path: gd.save writes it here, not into the checkout
    g, logits, loss = _trained_mlp()
    train = gd.compile([loss, logits], gd.optim.SGD(0.1), loss=loss)
    x, y = np.random.default_rng(0).random((10, 8), dtype=np.float32), np.arange(10) % 3
    good = {"outputs": [logits], "optimizer": gd.optim.SGD(0.1), "model": train, "train": train,
            "loader": gd.data.DataLoader(x, y), "path": str(tmp_path / "m.gdl"), "feeds": {"x": x[:2], "y": y[:2]},
            "values": {}, "name": "q", "shape": (None, 2), "objective": loss, "wrt": [train.ir.nodes[0]]}
    targets = {f"gd.{n}": getattr(gd, n) for n in dir(gd) if inspect.isfunction(getattr(gd, n)) and n[0] != "_"}
    targets.update({f"Executable.{n}": getattr(train, n) for n in dir(train)
                    if n[0] != "_" and inspect.ismethod(getattr(train, n))})
    for name, fn in sorted(targets.items()):
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        for k, p in enumerate(params):
            for bad in BAD:
                kwargs = {q.name: bad if j == k else good.get(q.name, 2) for j, q in enumerate(params)
                          if j == k or q.default is inspect.Parameter.empty}
                if name == "gd.fit":
                    kwargs.setdefault("progress", False)
                try:
                    with gd.Graph("s", seed=0):
                        fn(**kwargs)
                except gd.GraphDLError:
                    pass
                except TypeError as e:  # Python's own arity errors
                    assert any(s in str(e) for s in ("positional argument", "unexpected keyword", "required")), (
                        f"{name}({p.name}={bad!r}): TypeError {e}")
                except Exception as e:  # the point: nothing else may escape
                    pytest.fail(f"{name}({p.name}={bad!r}) raised {type(e).__name__}: {e}")


def test_data_and_picture_helpers_name_arguments_of_the_wrong_kind(tmp_path) -> None:
    for kwargs in ({"test_fraction": "0.2"}, {"test_fraction": 1.5}, {"seed": "a"}, {"dtype": "int8"}):
        with pytest.raises(gd.GraphDLError, match=r"load_digits: "):
            gd.data.load_digits(**kwargs)
    g, logits, loss = _trained_mlp()
    model = gd.compile([logits])
    for args, message in (((g, tmp_path / "m.png"), r"memory_plan draws a compiled model"),
                          ((model, 3), r"memory_plan takes a file path"),
                          ((model, tmp_path / "m.png", 0), r"batch_size must be a whole number >= 1")):
        with pytest.raises(gd.VizError, match=message):
            gd.viz.memory_plan(*args)


def test_graph_apply_names_arguments_of_the_wrong_kind() -> None:
    with gd.Graph("args") as g:
        x = gd.placeholder("x", (None, 4))
        for args, message in ((("relu", x), r"inputs are a list of nodes"), ((3, [x]), r"op is named by a string"),
                              (("sum", [x], [("axis", 0)]), r"attributes are a dict")):
            with pytest.raises(gd.GraphError, match=message):
                g.apply(*args)
        assert g.apply("relu", (x,)).shape == (None, 4)
