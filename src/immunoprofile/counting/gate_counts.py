"""Events per gate, counted over packed membership bitmasks of a whole batch at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._compile.jit import kernel


@kernel(args=[("u4", 1), ("i8", 1), ("int", 0)], returns=("i8", 2))
def _count_gate_events(bitmask, offsets, n_gates):
    n_samples = offsets.size - 1
    counts = np.zeros((n_samples, n_gates), dtype=np.int64)
    for s in range(n_samples):
        for e in range(offsets[s], offsets[s + 1]):
            word = bitmask[e]
            g = 0
            while word != 0 and g < n_gates:
                if word & 1:
                    counts[s, g] += 1
                word >>= 1
                g += 1
    return counts


def count_gate_events(bitmasks: Sequence[np.ndarray], n_gates: int) -> np.ndarray:
    """Count the events in every gate of every sample of a batch.

    Parameters
    ----------
    bitmasks : sequence of numpy.ndarray
        One uint32 array per sample, one value per event; bit ``g`` set when the event is
        in gate ``g`` (see :class:`immunoprofile.gating.flowkit_gating.GateMemberships`).
    n_gates : int
        Gates to count (bits 0 … n_gates−1), at most 32.

    Returns
    -------
    numpy.ndarray
        int64, samples × gates: events in each gate.
    """
    if not 0 <= n_gates <= 32:
        raise ValueError("n_gates must be between 0 and 32")
    lengths = np.fromiter((len(b) for b in bitmasks), dtype=np.int64, count=len(bitmasks))
    offsets = np.zeros(len(bitmasks) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(bitmasks):
        flat = np.concatenate([np.asarray(b, dtype=np.uint32) for b in bitmasks])
    else:
        flat = np.zeros(0, dtype=np.uint32)
    return _count_gate_events(np.ascontiguousarray(flat), offsets, int(n_gates))


def events_in_both(bitmask: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Events that two gates both hold, for each pair of gates of one tube.

    Parameters
    ----------
    bitmask : numpy.ndarray
        One tube's packed membership: one unsigned integer per event, bit ``g`` set when
        the event is in gate ``g``; or (words, events) of uint64, gate ``g`` bit ``g % 64``
        of word ``g // 64`` (the compiled engine's layout, any number of gates).
    pairs : sequence of (int, int)
        Gate indices, at most 32 pairs.

    Returns
    -------
    numpy.ndarray
        int64, one count per pair: events in both gates.
    """
    if len(pairs) > 32:
        raise ValueError("at most 32 pairs")
    bits = np.asarray(bitmask).astype(np.uint64, copy=False)
    words = bits.reshape(1, -1) if bits.ndim == 1 else bits
    both = np.zeros(words.shape[1], dtype=np.uint32)
    one = np.uint64(1)

    def member(g: int) -> np.ndarray:
        if not 0 <= g < 64 * words.shape[0]:
            raise ValueError(f"gate index {g} is beyond the bitmask's gates")
        return words[g // 64] >> np.uint64(g % 64)

    for k, (a, b) in enumerate(pairs):
        hit = (member(a) & member(b) & one).astype(np.uint32)
        both |= hit << np.uint32(k)
    return count_gate_events([both], len(pairs))[0]

