"""Settings that must hold before torch is imported. Under pytest-xdist (`make test` runs two workers) each worker
process uses one OpenMP / torch thread: two workers with torch's default of one thread per core would run four
busy threads on two cores, and torch slows down many times when oversubscribed. Subprocesses that tests start
(the CLI, servers, torchrun) inherit the setting unless a test sets its own."""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


# Under `pytest -n 2 --dist loadgroup` (make test) a test file's tests run in one worker, so its module-scoped
# fixtures (trained runs shared by its tests) are built once; the service tests share session fixtures (runs to
# serve, a PostgreSQL server) and run in one worker together. The model battery has no shared fixtures: its
# tests spread over both workers one by one.
_SPREAD = {"tests/models/test_contracts.py"}
# The files that take longest (CONTRIBUTING.md, measured), started first so that no long file is left running
# alone at the end; the battery's many short tests come last and fill the gaps.
_FIRST = ["tests/test_federate.py", "tests/test_cli.py", "tests/imaging/test_image_study.py", "tests/serve",
          "tests/ehr/test_ehr_study.py", "tests/test_dti.py", "tests/test_molecule_study.py",
          "tests/imaging/test_segmentation.py", "tests/test_screen.py", "tests/test_molgen.py",
          "tests/train/test_distributed.py", "tests/evaluate/test_external.py", "tests/tasks/test_effects.py",
          "tests/test_synth_events.py", "tests/nlp/test_icd.py"]


def _group(path: str) -> str:
    return "tests/serve" if path.startswith("tests/serve/") else path


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        group = _group(path)
        return _FIRST.index(group) if group in _FIRST else len(_FIRST) + (path in _SPREAD)

    items.sort(key=rank)  # stable: a file's tests keep their order
    for item in items:
        path = item.nodeid.split("::")[0]
        if path not in _SPREAD:
            item.add_marker(pytest.mark.xdist_group(_group(path)))
