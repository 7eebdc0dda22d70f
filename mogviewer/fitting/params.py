"""The people's parameters of a galaxy model (:class:`GalaxyParams`) and their units.

Conventions are those of :mod:`mogviewer.fitting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from ..ellipse import wrap_angle
from ..errors import FitError

#: Units of each parameter, for labels and exports.
PARAM_UNITS = {"flux": "image units", "x": "pix", "y": "pix", "re": "pix", "q": "",
               "angle": "deg", "sky": "image units/pix", "sky_dx": "image units/pix^2",
               "sky_dy": "image units/pix^2", "n": "", "flux2": "image units", "re2": "pix",
               "q2": "", "angle2": "deg"}


@dataclass(frozen=True)
class GalaxyParams:
    """Parameters for people (see the module conventions). Immutable; ``replace`` to change.

    ``flux2, re2, q2, angle2`` describe the second component of a composite (bulge + disk)
    model, which shares the centre ``x, y``; they are ignored by single-component problems.
    ``n`` is the Sérsic index of a ``'ser'`` profile (ignored by the other profiles).
    """

    flux: float
    x: float
    y: float
    re: float
    q: float
    angle: float
    sky: float = 0.0
    sky_dx: float = 0.0
    sky_dy: float = 0.0
    flux2: float = 0.0
    re2: float = 1.0
    q2: float = 1.0
    angle2: float = 0.0
    n: float = 1.0

    def __post_init__(self):
        for name in _NAMES:
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise FitError(f"parameter {name} is not finite ({v!r})")
            object.__setattr__(self, name, v)
        if not self.n > 0:
            raise FitError(f"the Sérsic index n must be positive, got {self.n!r}")
        for sfx in ("", "2"):
            if not getattr(self, "re" + sfx) > 0:
                raise FitError(f"r_e{sfx} must be positive, got {getattr(self, 're' + sfx)!r} px")
            if not 0 < getattr(self, "q" + sfx) <= 1:
                raise FitError(f"q{sfx} = b/a must be in (0, 1], got {getattr(self, 'q' + sfx)!r}")
            object.__setattr__(self, "angle" + sfx, wrap_angle(getattr(self, "angle" + sfx)))

    def as_dict(self):
        return {name: getattr(self, name) for name in _NAMES}

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def names(cls):
        return _NAMES


#: the field names in order (``dataclasses.fields`` builds its tuple anew on every call)
_NAMES = tuple(f.name for f in fields(GalaxyParams))


SHAPE = ("re", "q", "angle")
