"""Fuzzing read_fcs: mutated FCS bytes give a correct read or a clean one-line
FCSReadError — never a crash, a hang or another exception."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _fcs_writer import write_fcs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_corpus import reference_decode

from immunoprofile import FCSReadError, read_fcs


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    """A float file and a 16-bit integer file with log amplification, 50 events each."""
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    names = ["FSC-A", "SSC-A", "FL1-A", "Time"]
    float_file = write_fcs(folder / "float.fcs", rng.uniform(0, 1000, (50, 4)), names,
                           extra={"$TIMESTEP": "0.01", "$P3S": "CD3"})
    int_file = write_fcs(folder / "int.fcs", rng.integers(0, 1024, (50, 4)), names,
                         datatype="I", bits=16, byteord="4,3,2,1", ranges=[1024] * 4,
                         amplification=["0,0", "0,0", "4,1", "0,0"])
    return [float_file.read_bytes(), int_file.read_bytes()]


KEYWORDS = ["$TOT", "$PAR", "$P1B", "$P2R", "$P3E", "$DATATYPE", "$BYTEORD", "$MODE",
            "$TIMESTEP", "$BEGINDATA", "$ENDDATA", "$P4N", "$NEXTDATA"]
ODD_VALUES = st.one_of(st.sampled_from(["0", "-1", "", " ", "24", "999999999", "nan", "A",
                                        "x,y", "1,2", "4,3,2,1", "I", "F", "D", "C",
                                        "1e400"]),
                       st.text(max_size=12), st.integers(-10, 10**12).map(str))


def mutate(data: bytes, kind: int, where: float, value: str, noise: bytes) -> bytes:
    raw = bytearray(data)
    if kind == 0:  # a HEADER offset field overwritten
        start = 10 + 8 * int(where * 6)
        field = value.encode("latin-1", "replace")[:8].rjust(8)
        raw[start:start + 8] = field
    elif kind == 1:  # a TEXT keyword's value replaced (the TEXT may change length)
        text_end = int(bytes(raw[18:26]))
        text = bytes(raw[:text_end + 1]).decode("latin-1")
        key = KEYWORDS[int(where * len(KEYWORDS)) % len(KEYWORDS)]
        pattern = re.escape(key) + r"\|([^|]*)\|"
        clean = value.replace("|", "/")
        text = re.sub(pattern, lambda m: f"{key}|{clean}|", text, count=1)
        raw = bytearray(text.encode("latin-1", "replace")) + raw[text_end + 1:]
    elif kind == 2:  # truncated
        raw = raw[: int(where * len(raw))]
    else:  # random bytes in DATA (the last part of the file)
        start = max(0, len(raw) - 200 + int(where * 150))
        raw[start:start + len(noise)] = noise
    return bytes(raw)


@settings(max_examples=400, deadline=2000, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@example(which=1, kind=1, where=0.3, value="1e400", noise=b"x")  # found by fuzzing: $P2R inf
@given(which=st.integers(0, 1), kind=st.integers(0, 3),
       where=st.floats(0, 1, exclude_max=True), value=ODD_VALUES,
       noise=st.binary(min_size=1, max_size=40))
def test_mutated_files_read_or_refused_cleanly(valid_files, tmp_path, which, kind, where,
                                               value, noise):
    path = tmp_path / "mutated.fcs"
    path.write_bytes(mutate(valid_files[which], kind, where, value, noise))
    try:
        data = read_fcs(path)
    except FCSReadError as exc:
        message = str(exc)
        assert message.startswith("mutated.fcs: ") and "\n" not in message, message
        return
    # A read is a whole one: every event, every channel, as TEXT declares them.
    tot, par = int(data.keywords["tot"]), int(data.keywords["par"])
    assert data.events.shape == (tot, par)
    assert len(data.channels) == par
    if kind == 3:  # HEADER and TEXT intact, DATA noisy: the values are still the right ones
        expected = reference_decode(path)
        np.testing.assert_allclose(data.events, expected, rtol=1e-6, atol=1e-9,
                                   equal_nan=True)
