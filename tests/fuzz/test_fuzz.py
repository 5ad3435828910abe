"""The short seeded slice of the reader fuzzing `make fuzz` runs at scale (docs/security.md): every reader, 100
mutated inputs each, the same inputs on every run (derandomized), the property of `harness.check`."""

import warnings

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fuzz.harness import check, mutated
from tests.fuzz.targets import TARGETS


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_reader_survives_mutated_input(target):
    warnings.simplefilter("ignore")
    seed = target.seed()
    assert check(target, seed, limit=0) is None  # the valid seed reads

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(mutated(seed))
    def one(data):
        problem = check(target, data)
        assert problem is None, problem

    one()
