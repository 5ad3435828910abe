"""Mutation fuzzing of medflow's readers (`targets.py`), with Hypothesis.

An input is a target's valid seed with 1-8 byte-level mutations (flip, insert, delete, duplicate, truncate, and
tokens parsers trip on: NUL, 0xFF, quotes, separators, newlines, huge and negative numbers, NaN, unbalanced
brackets). The property, per input: the reader returns, or raises `MedflowError` whose message names the file or
its folder; any other exception is a crash, more than `TIME_LIMIT` seconds a hang (SIGALRM), and the process's
peak RSS over `MEMORY_LIMIT_GB` a memory failure.

`make test` runs a short seeded slice (`tests/fuzz/test_fuzz.py`); `make fuzz` runs 10,000 inputs per reader
(`python -m tests.fuzz.run`), writing any crash to `fuzz-crashes/` for a regression test.
"""

from __future__ import annotations

import resource
import signal
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from medflow.errors import MedflowError
from tests.fuzz.targets import Target

TIME_LIMIT = 10  # seconds per input
MEMORY_LIMIT_GB = 6.0
TOKENS = [b"\x00", b"\xff", b"\xfe\xff", b'"', b"'", b",", b";", b"\t", b"\n", b"\r\n", b"{", b"}", b"[", b"]",
          b"<", b">", b"]]>", b"-1", b"0", b"99999999999999999999", b"1e309", b"NaN", b"-", b"//", b"\\", b"|", b"||",
          b":", b"=", b"\xc3\x28", b"\xe2\x82", "é".encode("latin-1")]


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "token", "delete", "dup", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "token":
            tok = draw(st.sampled_from(TOKENS))
            if draw(st.booleans()):
                data[at:at] = tok
            else:
                data[at:at + len(tok)] = tok
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "dup":
            n = draw(st.integers(1, 256))
            data[at:at] = data[at:at + n] * draw(st.integers(1, 4))
        elif op == "truncate":
            del data[at:]
    return bytes(data)


class _Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Hang()


def check(target: Target, data: bytes, root: Path | None = None, limit: int = TIME_LIMIT) -> str | None:
    """None when the property holds for `data`; else what went wrong (a crash, a hang, memory, a message that
    does not say which file). `limit`: seconds (0: none, for the first call, which pays the imports)."""
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        case = Path(tmp) / "case"
        case.mkdir()
        if target.others:
            target.others(case)
        path = case / target.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(limit)
        try:
            target.read(path)
        except _Hang:
            return f"hang: over {limit} s"
        except MedflowError as exc:
            msg = str(exc)
            if not any(name in msg for name in {path.name, path.parent.name, case.name}):
                return f"message does not name the file: {msg[:300]}"
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - the property: nothing but medflow's own errors (a Rust panic
            return f"crash: {type(exc).__name__}: {exc}"[:400]  # in a library is a BaseException)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if peak > MEMORY_LIMIT_GB:
        return f"memory: peak RSS {peak:.1f} GB over {MEMORY_LIMIT_GB} GB"
    return None
