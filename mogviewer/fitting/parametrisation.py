"""The optimiser's unconstrained vector and its map to and from the people's parameters.

The ellipse is ``ln r_circ, eta1, eta2`` (:mod:`mogviewer.ellipse`); bounded parameters go through
smooth maps, so no trial point of the optimiser can leave the valid region.
"""

from __future__ import annotations

import math

import numpy as np

from ..ellipse import (
    eta_to_physical,
    physical_to_eta,
    shape_jacobian_eta,
    shape_jacobian_physical,
    shape_matrix,
)
from .params import SHAPE, GalaxyParams
from .problem import _ETA_MAX, _LN_R_MAX, _LN_R_MIN, _Q_MIN

# ---------------------------------------------------------------------------------------------
# parametrisation
# ---------------------------------------------------------------------------------------------

def _clip_eta(u):
    u = np.array(u, float)
    u[0] = min(max(u[0], _LN_R_MIN), _LN_R_MAX)
    eta = math.hypot(u[1], u[2])
    if eta > _ETA_MAX:
        u[1:] *= _ETA_MAX / eta
    return u


class _Param:
    """Maps between GalaxyParams and the optimiser's free vector ``z``.

    For each galaxy component (suffix ``''``, and ``'2'`` for the second component of a
    bulge + disk model) the shape is in ``eta`` mode ``(ln r_circ, eta1, eta2)`` when its re, q
    and angle are all free and unbounded; otherwise each free shape parameter is mapped on its
    own: ``ln re``, ``logit q``, ``angle``.
    """

    def __init__(self, problem, start):
        self.problem = problem
        self.start = start
        self.free = problem.free
        self.suffixes = problem.suffixes
        self.eta_mode = {}
        for sfx in self.suffixes:
            shape = [p + sfx for p in SHAPE]
            self.eta_mode[sfx] = (all(p in self.free for p in shape)
                                  and not any(problem.bounds.get(p) for p in shape))
        names = []
        for p in self.free:
            base, sfx = _split(p)
            if base in SHAPE:
                if self.eta_mode[sfx]:
                    if base == "re":
                        names += ["ln_rcirc" + sfx, "eta1" + sfx, "eta2" + sfx]
                else:
                    names.append({"re": "ln_re", "q": "q", "angle": "angle"}[base] + sfx)
            else:
                names.append(p)
        self.znames = names

    def to_z(self, p):
        z = []
        for name in self.znames:
            base, sfx = _split(name)
            if base == "ln_rcirc":
                z.extend(physical_to_eta(getattr(p, "re" + sfx), getattr(p, "q" + sfx),
                                         getattr(p, "angle" + sfx)))
            elif base in ("eta1", "eta2"):
                continue
            elif base == "ln_re":
                z.append(math.log(getattr(p, "re" + sfx)))
            else:
                z.append(getattr(p, name))
        return np.array(z, float)

    def from_z(self, z):
        d = self.start.as_dict()
        plan = self._plan
        if plan is None:
            plan = self._plan = self._from_z_plan()
        for kind, i, name, sfx in plan:
            if kind == 0:
                d[name] = float(z[i])
            elif kind == 1:
                d["re" + sfx], d["q" + sfx], d["angle" + sfx] = eta_to_physical(
                    _clip_eta(z[i:i + 3]))
            else:
                d["re" + sfx] = math.exp(min(max(z[i], _LN_R_MIN), _LN_R_MAX))
        for sfx in self.suffixes:
            d["q" + sfx] = min(max(d["q" + sfx], _Q_MIN), 1.0)
        return GalaxyParams(**d)

    _plan = None

    def _from_z_plan(self):
        """:meth:`from_z`'s steps, from the names once: ``(kind, index, name, suffix)`` with
        kind 0 a value as it is, 1 an eta-mode shape at ``index .. index + 2``, 2 ``ln re``."""
        plan = []
        skip = 0
        for i, name in enumerate(self.znames):
            if skip:
                skip -= 1
                continue
            base, sfx = _split(name)
            if base == "ln_rcirc":
                plan.append((1, i, name, sfx))
                skip = 2
            elif base == "ln_re":
                plan.append((2, i, name, sfx))
            else:
                plan.append((0, i, name, sfx))
        return plan

    def bounds(self):
        lo = np.full(len(self.znames), -np.inf)
        hi = np.full(len(self.znames), np.inf)
        for i, name in enumerate(self.znames):
            base, sfx = _split(name)
            phys = {"ln_re": "re"}.get(base, base) + sfx
            l, h = self.problem.bounds.get(phys) or (None, None)
            if base == "q":  # q is optimised directly, always inside [1e-4, 1]
                l = _Q_MIN if l is None else max(l, _Q_MIN)
                h = 1.0 if h is None else min(h, 1.0)
            if base == "ln_re":
                l = math.log(l) if l and l > 0 else None
                h = math.log(h) if h and h > 0 else None
            if l is not None:
                lo[i] = l
            if h is not None:
                hi[i] = h
        return lo, hi

    def shape_S_and_dz(self, z, p, sfx=""):
        """S (2x2) of component ``sfx`` and d(Sxx, Sxy, Syy)/dz as ``{z index: 3-vector}``."""
        out = {}
        re, q, angle = (getattr(p, n + sfx) for n in SHAPE)
        if self.eta_mode[sfx]:
            i = self.znames.index("ln_rcirc" + sfx)
            S3, J = shape_jacobian_eta(_clip_eta(z[i:i + 3]))
            for c in range(3):
                out[i + c] = J[:, c]
            return np.array([[S3[0], S3[1]], [S3[1], S3[2]]]), out
        Jp = shape_jacobian_physical(re, q, angle)
        for i, name in enumerate(self.znames):
            base, s2 = _split(name)
            if s2 != sfx:
                continue
            if base == "ln_re":
                out[i] = Jp[:, 0] * re
            elif base == "q":
                out[i] = Jp[:, 1]
            elif base == "angle":
                out[i] = Jp[:, 2]
        return shape_matrix(re, q, angle), out


def _split(name):
    """``'re2' -> ('re', '2')``; ``'sky_dx' -> ('sky_dx', '')``."""
    if name.endswith("2") and not name.startswith("eta") or name in ("eta12", "eta22"):
        return name[:-1], "2"
    return name, ""
