"""Every file of ../shared/fcs-corpus is read with the right values or refused with a
one-line reason; "right" is checked against a deliberately simple reference decoder."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from conftest import shared_path

from immunoprofile import FCSReadError, read_fcs


def corpus_files():
    root = shared_path("fcs-corpus")
    with open(root / "catalog.tsv", newline="") as handle:
        return [root / row["path"] for row in csv.DictReader(handle, delimiter="\t")]


def reference_decode(path):
    """Python over the DATA segment as HEADER and TEXT describe it, value by value
    (``int.from_bytes``, ``struct``), for list-mode files of any integer width or of floats;
    None where this simple decoder does not go."""
    import struct

    raw = path.read_bytes()

    def data_set(base):
        text_start, text_end, header_start = (int(raw[base + a:base + b].strip() or 0)
                                              for a, b in ((10, 18), (18, 26), (26, 34)))
        text = raw[base + text_start:base + text_end + 1].decode("latin-1")
        delimiter = text[0]
        fields = text[1:].replace(delimiter * 2, "\0").split(delimiter)
        keys = {fields[i].replace("\0", delimiter).strip().upper():
                fields[i + 1].replace("\0", delimiter) for i in range(0, len(fields) - 1, 2)}
        # TEXT's $BEGINDATA where it has one (it is what the standard reads for FCS 3),
        # else HEADER's offset.
        begin = keys.get("$BEGINDATA", "").strip()
        return keys, base + (int(begin) if begin.isdigit() and int(begin) > 0
                             else header_start)

    keys, data_start = data_set(0)
    # A Beckman Coulter LMD file: an FCS 2.0 data set, then an FCS 3.0 one of the same
    # events; the FCS 3.0 one holds the full-resolution values (what FlowJo reads).
    following = int(keys.get("$NEXTDATA", "0").strip() or 0)
    if raw[:6] == b"FCS2.0" and following and raw[following:following + 4] == b"FCS3":
        second, second_start = data_set(following)
        if second["$TOT"].strip() == keys["$TOT"].strip():
            keys, data_start = second, second_start
    tot, par = int(keys["$TOT"]), int(keys["$PAR"])
    order = {"1,2,3,4": "little", "1,2": "little", "4,3,2,1": "big", "2,1": "big"}.get(
        keys.get("$BYTEORD", "").strip())
    datatype = keys.get("$DATATYPE", "").strip().upper()
    try:
        widths = [int(keys[f"$P{i}B"]) // 8 for i in range(1, par + 1)]
    except (KeyError, ValueError):
        return None
    if keys.get("$MODE", "L").strip().upper() != "L" or order is None or \
            datatype not in ("I", "F", "D"):
        return None
    values = np.empty((tot, par))
    position = data_start
    float_format = ("<" if order == "little" else ">") + ("f" if datatype == "F" else "d")
    for event in range(tot):
        for i, width in enumerate(widths):
            chunk = raw[position:position + width]
            position += width
            if datatype == "I":
                value = int.from_bytes(chunk, order)
                bits = math.ceil(math.log2(float(keys[f"$P{i + 1}R"])))
                values[event, i] = value & (2 ** min(bits, 8 * width) - 1)
            else:
                values[event, i] = struct.unpack(float_format, chunk)[0]
    for i in range(par):
        n = i + 1
        f1, f2 = (float(v) for v in keys.get(f"$P{n}E", "0,0").split(","))
        gain = float(keys.get(f"$P{n}G", "1") or 1)
        if keys.get(f"$P{n}N", "").strip().lower() == "time" and "$TIMESTEP" in keys:
            # FCS 3.1: time is scaled by $TIMESTEP; its $PnG (BD writes the time step
            # there too) is not applied again. A $TIMESTEP that is no number: unscaled.
            try:
                values[:, i] *= float(keys["$TIMESTEP"])
            except ValueError:
                pass
        elif f1 > 0:
            values[:, i] = (f2 or 1.0) * 10 ** (f1 * values[:, i] / float(keys[f"$P{n}R"]))
        elif gain not in (0.0, 1.0):
            values[:, i] /= gain
    return values


@pytest.mark.slow
def test_every_corpus_file_reads_right_or_is_refused_in_one_line():
    read, compared, refused = 0, 0, []
    for path in corpus_files():
        try:
            data = read_fcs(path)
        except FCSReadError as exc:
            message = str(exc)
            assert message.startswith(f"{path.name}: ") and "\n" not in message, message
            refused.append(path.name)
            continue
        read += 1
        assert data.events.shape == (int(data.keywords["tot"]), int(data.keywords["par"]))
        assert len(data.channels) == len(data.markers) == data.events.shape[1]
        expected = reference_decode(path)
        if expected is not None:
            np.testing.assert_allclose(data.events, expected, rtol=1e-6, atol=1e-9,
                                       err_msg=str(path))
            compared += 1
    # The files whose bytes no reader can make sense of are among the refused.
    assert sorted(refused) == ["corrupted.fcs", "sample_header.fcs", "wrongFile.fcs"]
    assert read >= 57 and compared >= 56, (read, compared, refused)


@pytest.mark.parametrize("relative, warning", [
    ("flowkit/test_comp_example.fcs", "off by one byte"),
    ("cytopy/test.FCS", "more than one data set"),
    ("flowkit/multi_dataset_fcs/coulter.lmd", "more than one data set"),
    ("fcsparser/fake_large_fcs/fake_large_fcs.fcs", "DATA offsets blank"),
    ("flowcal/test/Data003.fcs", "decoded by immunoprofile"),  # 24-bit, bits beyond $PnR
    ("fcsparser/Cytek_xP5/Cytek_xP5.fcs", "decoded by immunoprofile"),
    ("flowio/variable_int_example.fcs", "$TIMESTEP 'xxxxxxxxx' is not a number"),
    ("flowkit/noncompliant/data_start_offset_discrepancy_example.fcs",
     "HEADER and TEXT give different DATA offsets"),
])
def test_files_that_bend_the_standard_are_read_with_a_warning(relative, warning):
    data = read_fcs(shared_path("fcs-corpus", *relative.split("/")))
    assert any(warning in w for w in data.warnings), data.warnings
    assert data.event_count > 0 and np.isfinite(data.events).all()


def test_inspect_command(tmp_path):
    import subprocess
    import sys

    path = shared_path("fcs-corpus", "flowsom", "68983.fcs")
    result = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "inspect", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for expected in ("FCS version", "events", "CD3", "spillover"):
        assert expected in result.stdout
    bad = tmp_path / "bad.fcs"
    bad.write_bytes(b"definitely not FCS")
    result = subprocess.run([sys.executable, "-m", "immunoprofile.cli", "inspect", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: bad.fcs: not an FCS file (it does not start " \
                                    "with 'FCS')"


def test_fcs_32_mixed_channel_types_are_refused_not_misread(tmp_path):
    from support.fcs_writer import write_fcs

    data = np.arange(40, dtype=float).reshape(10, 4)
    path = write_fcs(tmp_path / "fcs32.fcs", data, ["FSC-A", "SSC-A", "FL1-A", "Time"],
                     extra={"$P3DATATYPE": "I"})
    with pytest.raises(FCSReadError, match=r"fcs32.fcs: .*\$PnDATATYPE I beside "
                                           r"\$DATATYPE F"):
        read_fcs(path)


@pytest.mark.parametrize("relative", ["flowcal/test/Data003.fcs", "cytopy/test.FCS",
                                      "flowkit/test_comp_example.fcs"])
def test_gating_path_reads_what_read_fcs_reads(relative):
    """The gating path's fast reader hands files it refuses to read_fcs: same values."""
    from immunoprofile.io.events import read_events

    path = shared_path("fcs-corpus", *relative.split("/"))
    events = read_events(path)
    data = read_fcs(path)
    assert events.pnn == data.channels
    np.testing.assert_array_equal(np.asarray(events.data, dtype=float), data.events)
