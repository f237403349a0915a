"""History: the values ``fit`` records per epoch, by name ("loss" and "val_loss" alias the objective's name);
saved to and loaded from JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

from graphdl.errors import GraphDLError


@dataclass
class History:
    """Per-epoch values: ``history.epochs[k]`` is a dict such as {"epoch": 3, "cross_entropy": 0.21, ...}.

    ``history[name]`` lists one value per epoch; "loss" and "val_loss" are aliases for the objective's
    name when no output is called that. Saves to and loads from JSON or CSV.
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    objective: str | None = None

    def _key(self, key: str) -> str:
        if self.objective and not any(key in e for e in self.epochs):
            if key == "loss":
                return self.objective
            if key == "val_loss":
                return "val_" + self.objective
        return key

    def __getitem__(self, key: str) -> list[float]:
        key = self._key(key)
        values = [e[key] for e in self.epochs if key in e]
        if not values:
            raise KeyError(f"history has no '{key}'; it has {self.keys()}")
        return values

    def __contains__(self, key: str) -> bool:
        key = self._key(key)
        return any(key in e for e in self.epochs)

    def keys(self) -> list[str]:
        """Every recorded name, in first-seen order."""
        seen: dict[str, None] = {}
        for e in self.epochs:
            seen.update(dict.fromkeys(e))
        return list(seen)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write JSON (``.json``) or CSV (any other extension; one row per epoch)."""
        path = os.fspath(path)
        if path.endswith(".json"):
            text = json.dumps({"objective": self.objective, "epochs": self.epochs}, indent=1)
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self.keys(), lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.epochs)
            text = (f"# objective: {self.objective}\n" if self.objective else "") + buf.getvalue()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a file written by ``save``."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if path.endswith(".json"):
                data = json.loads(text)
                return cls([{k: _number(v) for k, v in e.items()} for e in data["epochs"]], data.get("objective"))
            objective = None
            if text.startswith("# objective: "):
                first, _, text = text.partition("\n")
                objective = first[len("# objective: "):]
            rows = [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(text))]
            return cls(rows, objective)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise GraphDLError(f"cannot read history file '{path}': {e}") from None


def _number(v: Any) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() and "." not in str(v) and "e" not in str(v).lower() else f
