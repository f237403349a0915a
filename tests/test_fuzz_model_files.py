"""Seeded fuzzing of real model files (MLP, CNN with BatchNorm, Adam training file): every mutated file
either fails with ModelFileError or loads and behaves identically. ``--fuzz-cases=N`` for more cases."""

from __future__ import annotations

import pytest

from tests import fuzz_model_files as fuzz


def test_mutated_model_files_fail_cleanly_or_behave_identically(request: pytest.FixtureRequest) -> None:
    cases = request.config.getoption("--fuzz-cases")
    fuzz.EXAMPLES.clear()
    table = fuzz.run(cases, seed=0, bomb_mib=64)
    seen = {family for family, _ in table}
    assert seen == set(fuzz.FAMILIES) or cases < 200, seen
    bad = {k: v for c in table.values() for k, v in c.items() if k not in fuzz.ALLOWED}
    assert not bad, f"{bad}\n{fuzz.format_table(table)}\nfirst cases: {fuzz.EXAMPLES[:10]}"
    assert sum(sum(c.values()) for c in table.values()) == cases
