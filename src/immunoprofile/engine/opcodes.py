"""The codes the gating kernels and the code that lowers strategies share.

Kept apart from the kernels (which import Numba) so that lowering, binding and running a
stored or ahead-of-time compiled program need no Numba import.
"""

from __future__ import annotations

import numpy as np

# Gate kinds
RECT = 0
POLYGON = 1
ELLIPSOID = 2
BOOLEAN = 3

# Value kinds
VALUE_CHANNEL = 0
VALUE_COMBINATION = 1
VALUE_RATIO = 2

# Boolean operations
AND = 0
OR = 1
NOT = 2

# Transform kinds (the transform kernel's switch, :mod:`.transform_kernels`)
IDENTITY = 0
LINEAR = 1
LOG = 2
ASINH = 3
LOGICLE = 4
HYPERLOG = 5
WSP_LOG = 6
WSP_BIEX = 7

#: Parameter slots of a lowered transform: logicle/hyperlog use all of them; others the
#: first few.
N_PARAMS = 32
#: The (hyper)biexponential's Taylor coefficients: slots TAYLOR_START onwards.
TAYLOR_START = 16
TAYLOR_LENGTH = 16

#: Largest untransformed magnitude whose range tests are mapped to bounds (thresholds.py);
#: beyond it, and beyond a transform's own ``domain``, the kernel transforms per event.
DOMAIN = float(2.0**50)

# Polygon edge kinds
EDGE_HORIZONTAL = 0
EDGE_VERTICAL = 1
EDGE_SLOPED = 2


#: Bracket tables: |v| from 2**-10 to 2**24, 64 cells per binade (float64 bit pattern).
BRACKET_LOW_BITS = int(np.float64(2.0**-10).view(np.int64))
BRACKET_HIGH_BITS = int(np.float64(2.0**24).view(np.int64))
BRACKET_SHIFT = 46
BRACKET_CELLS = (BRACKET_HIGH_BITS - BRACKET_LOW_BITS) >> BRACKET_SHIFT
