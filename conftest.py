"""Settings that must hold before torch is imported. Under pytest-xdist (`make test` runs two workers) each worker
process uses one OpenMP / torch thread: two workers with torch's default of one thread per core would run four
busy threads on two cores, and torch slows down many times when oversubscribed. Subprocesses that tests start
(the CLI, servers, torchrun) inherit the setting unless a test sets its own."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
