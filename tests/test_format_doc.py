"""docs/FORMAT.md documents the attributes of every op in the op table."""

from __future__ import annotations

import os
import re

from graphdl.registry import all_ops

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "FORMAT.md")


def test_every_op_and_attribute_is_in_the_format_doc() -> None:
    text = open(DOC).read()
    section = text.split("### Attributes", 1)[1].split("## weights.npz", 1)[0]
    documented = set(re.findall(r"`([a-z0-9_]+)`", section))
    missing = [name for name in all_ops() if name not in documented]
    assert not missing, f"ops missing from docs/FORMAT.md: {missing}"
    for name, op in all_ops().items():
        for key in op.attr_schema or {}:
            assert f"`{key}`" in section, (name, key)
