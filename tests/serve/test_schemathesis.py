"""schemathesis (its default checks, none switched off) against the service's own OpenAPI schema: no 500s, every
response matching the schema, schema-violating requests refused, auth enforced."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from medflow.serve import ServiceConfig, Store, create_app


@pytest.fixture(scope="module")
def app_and_key(runs_root, tmp_path_factory):
    cfg = ServiceConfig(db=str(tmp_path_factory.mktemp("st") / "st.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("fuzz")
    return create_app([runs_root["risk"], runs_root["surv"]], cfg), key


def test_api_conforms(app_and_key):
    """Every documented operation, 25 generated cases each (positive and negative data), all default checks."""
    from hypothesis import given

    app, key = app_and_key
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"})

        check()
