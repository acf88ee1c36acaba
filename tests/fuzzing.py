"""Byte-level mutations for the fuzz tests (tests/test_fuzz_*.py), drawn by Hypothesis."""

import contextlib
import signal

from hypothesis import strategies as st

MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
    st.tuples(st.just("flip"), st.floats(0.0, 1.0), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0.0, 1.0), st.integers(1, 64)),
    st.tuples(st.just("fill"), st.floats(0.0, 1.0), st.integers(1, 256),
              st.sampled_from([0x00, 0xFF])),
)


def mutate(data: bytes, mutations) -> bytes:
    """`data` with each mutation applied in turn at a relative position in [0, 1]."""
    buffer = bytearray(data)
    for mutation in mutations:
        kind, where = mutation[0], mutation[1]
        at = min(int(where * len(buffer)), max(len(buffer) - 1, 0))
        if kind == "truncate":
            del buffer[at:]
        elif kind == "flip" and buffer:
            buffer[at] ^= mutation[2]
        elif kind == "insert":
            buffer[at:at] = mutation[2]
        elif kind == "delete":
            del buffer[at:at + mutation[2]]
        elif kind == "fill":
            buffer[at:at + mutation[2]] = bytes([mutation[3]]) * len(buffer[at:at + mutation[2]])
    return bytes(buffer)


MUTATIONS = st.lists(MUTATION, min_size=1, max_size=3)


@contextlib.contextmanager
def time_limit(seconds: int, what: str):
    """Fail with an AssertionError naming `what` when the block runs past `seconds` (a hang
    or a runaway decode); SIGALRM, so the test must run in the main thread."""
    def expire(signum, frame):
        raise AssertionError(f"{what}: no outcome within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
