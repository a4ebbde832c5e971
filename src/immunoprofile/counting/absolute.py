"""Absolute counts (cells/µL = cells/mm³), the CD4/CD8 ratio and counting precision.

Single-platform (bead) method::

    cells/µL = population events / bead events × beads per test / blood volume (µL)

Dual-platform method, from the haematology analyser's absolute lymphocyte count (ALC)::

    cells/µL = population events / lymphocyte events × ALC (×10⁹/L) × 1000

Every function takes arrays (one value per sample) and returns NaN where the result is
undefined (no beads, no lymphocytes, missing ALC) — never a silent zero or infinity.
"""

from __future__ import annotations

import numpy as np

from .._compile.jit import kernel


@kernel(args=[("f8", 1)] * 4, returns=("f8", 1))
def _single_platform(population_events, bead_events, beads_per_test, volume_ul):
    out = np.empty(population_events.size, dtype=np.float64)
    for i in range(out.size):
        if bead_events[i] > 0 and volume_ul[i] > 0 and population_events[i] >= 0:
            out[i] = population_events[i] / bead_events[i] * beads_per_test[i] / volume_ul[i]
        else:
            out[i] = np.nan
    return out


@kernel(args=[("f8", 1)] * 3, returns=("f8", 1))
def _dual_platform(population_events, lymphocyte_events, alc):
    out = np.empty(population_events.size, dtype=np.float64)
    for i in range(out.size):
        if lymphocyte_events[i] > 0 and alc[i] >= 0:
            out[i] = population_events[i] / lymphocyte_events[i] * alc[i] * 1000.0
        else:
            out[i] = np.nan  # also when alc is NaN: the comparison above is False
    return out


@kernel(args=[("f8", 1)] * 2, returns=("f8", 1))
def _ratio(numerator, denominator):
    out = np.empty(numerator.size, dtype=np.float64)
    for i in range(out.size):
        if denominator[i] > 0 and numerator[i] >= 0:
            out[i] = numerator[i] / denominator[i]
        else:
            out[i] = np.nan
    return out


@kernel(args=[("f8", 1)] * 2, returns=("f8", 1))
def _poisson_cv(population_events, bead_events):
    out = np.empty(population_events.size, dtype=np.float64)
    for i in range(out.size):
        if population_events[i] > 0 and bead_events[i] > 0:
            out[i] = np.sqrt(1.0 / population_events[i] + 1.0 / bead_events[i])
        else:
            out[i] = np.nan
    return out


def _aligned(*values) -> list[np.ndarray]:
    """Float64 1-D contiguous arrays of one common length (scalars are broadcast).

    Raises
    ------
    ValueError
        Arrays of different lengths: the kernels do not bounds-check.
    """
    arrays = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in values]
    if any(a.ndim != 1 for a in arrays):
        raise ValueError("counting inputs must be scalars or 1-D arrays")
    try:
        arrays = np.broadcast_arrays(*arrays)
    except ValueError:
        lengths = ", ".join(str(a.size) for a in arrays)
        raise ValueError(f"counting inputs have different lengths ({lengths})") from None
    return [np.ascontiguousarray(a) for a in arrays]


def single_platform_cells_per_ul(population_events, bead_events, beads_per_test,
                                 volume_ul) -> np.ndarray:
    """Absolute counts by the single-platform bead method.

    Parameters
    ----------
    population_events : array_like
        Events in the population's gate, events.
    bead_events : array_like
        Events in the bead gate, events.
    beads_per_test : array_like
        Beads added to the tube (from the bead lot), beads.
    volume_ul : array_like
        Blood volume stained, µL.

    Returns
    -------
    numpy.ndarray
        cells/µL (= cells/mm³); NaN where there are no bead events or no volume.

    Examples
    --------
    >>> single_platform_cells_per_ul([2000], [10000], [50000], [50])
    array([200.])
    """
    return _single_platform(*_aligned(population_events, bead_events, beads_per_test,
                                      volume_ul))


def dual_platform_cells_per_ul(population_events, lymphocyte_events, alc) -> np.ndarray:
    """Absolute counts by the dual-platform method.

    Parameters
    ----------
    population_events : array_like
        Events in the population's gate, events.
    lymphocyte_events : array_like
        Events in the lymphocyte gate of the same tube, events.
    alc : array_like
        Absolute lymphocyte count from the haematology analyser, ×10⁹/L; NaN when unknown.

    Returns
    -------
    numpy.ndarray
        cells/µL; NaN where the ALC is unknown or there are no lymphocyte events.

    Examples
    --------
    >>> dual_platform_cells_per_ul([500], [5000], [2.0])
    array([200.])
    """
    return _dual_platform(*_aligned(population_events, lymphocyte_events, alc))


def ratio(numerator, denominator) -> np.ndarray:
    """Element-wise ``numerator / denominator`` that is NaN, not infinite, for a zero denominator.

    Parameters
    ----------
    numerator, denominator : array_like
        Counts or concentrations in matching units.

    Returns
    -------
    numpy.ndarray
        Dimensionless.
    """
    return _ratio(*_aligned(numerator, denominator))


def cd4_cd8_ratio(cd4_per_ul, cd8_per_ul) -> np.ndarray:
    """CD4/CD8 ratio from absolute counts (any matching units).

    Returns
    -------
    numpy.ndarray
        Dimensionless; NaN where CD8 is zero or either count is unknown.
    """
    return ratio(cd4_per_ul, cd8_per_ul)


def poisson_cv(population_events, bead_events) -> np.ndarray:
    """Counting precision of a single-platform absolute count.

    Parameters
    ----------
    population_events, bead_events : array_like
        Events, events.

    Returns
    -------
    numpy.ndarray
        Coefficient of variation from Poisson counting error of both counts,
        ``sqrt(1/population + 1/beads)`` (0.05 = 5 %); NaN when either is zero.
    """
    return _poisson_cv(*_aligned(population_events, bead_events))
