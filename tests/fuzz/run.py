"""`make fuzz`: N mutated inputs per reader (default 10,000), the property of `harness.check` on each; a table of
inputs, seconds and failures per reader, and every failing input written to `fuzz-crashes/<reader>/` for a
regression test. Each reader runs in its own process: a library that aborts the process (a Rust allocation
failure cannot be caught in Python) is reported as an abort with the input that caused it (`.last`, written
before each read). Exit status 1 when any input fails.

    python -m tests.fuzz.run [--n 10000] [--only "csv table" ...] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from tests.fuzz.harness import check, mutated
from tests.fuzz.targets import TARGETS


def fuzz(target, n: int, seed: int, out: Path) -> dict:
    base = target.seed()
    first = check(target, base, limit=0)  # the first call pays the imports: no time limit
    fails: list[tuple[str, bytes]] = []

    d = out / target.name.replace(" ", "_")
    d.mkdir(parents=True, exist_ok=True)
    count = [0]

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate], derandomize=False)
    @given(mutated(base))
    def one(data: bytes) -> None:
        count[0] += 1
        (d / ".last").write_bytes(data)  # kept if the process aborts inside the reader
        (d / ".count").write_text(str(count[0]))
        r = check(target, data)
        if r:
            fails.append((r, data))

    t0 = time.perf_counter()
    hypothesis_seed(seed)(one)()  # reproducible with --seed
    sec = time.perf_counter() - t0
    for r, data in fails:
        h = hashlib.sha1(data).hexdigest()[:12]
        (d / f"{h}{Path(target.filename).suffix}").write_bytes(data)
        (d / f"{h}.txt").write_text(r + "\n")
    return {"reader": target.name, "inputs": n, "seconds": round(sec, 1), "failures": len(fails),
            "seed_input": first or "ok", "kinds": sorted({r.split(":")[0] for r, _ in fails})}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz-crashes")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    if a.child:  # one reader, in this process
        print(json.dumps(fuzz(next(t for t in TARGETS if t.name == a.child), a.n, a.seed, Path(a.out))), flush=True)
        return 0
    rows = []
    for t in TARGETS:
        if a.only and t.name not in a.only:
            continue
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "tests.fuzz.run", "--child", t.name, "--n", str(a.n), "--seed",
                            str(a.seed), "--out", a.out], capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode == 0 and lines:
            rows.append(json.loads(lines[-1]))
        else:  # the reader took the process down: keep the input that did it
            d = Path(a.out) / t.name.replace(" ", "_")
            done = int((d / ".count").read_text()) if (d / ".count").exists() else 0
            if (d / ".last").exists():
                data = (d / ".last").read_bytes()
                h = hashlib.sha1(data).hexdigest()[:12]
                (d / f"{h}{Path(t.filename).suffix}").write_bytes(data)
                (d / f"{h}.txt").write_text(f"abort: exit status {r.returncode}\n{r.stderr[-2000:]}\n")
            rows.append({"reader": t.name, "inputs": done, "seconds": round(time.perf_counter() - t0, 1),
                         "failures": 1, "seed_input": "ok", "kinds": [f"abort (exit {r.returncode})"]})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| reader | inputs | seconds | failures |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['reader']} | {r['inputs']:,} | {r['seconds']:.0f} | {r['failures']} |")
    return 1 if any(r["failures"] or r["seed_input"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
