"""Normal equations of a galaxy fit, accumulated while the derivative kernel renders.

:class:`NormalAccumulator` draws one galaxy at unit flux with its five derivative planes
(:func:`mogviewer.render.kernels._derivs_kernel_py`) and, on each group of rows as it is
finished, adds them to the weighted, masked sums of :mod:`mogviewer.render.accumulate`:
the Gram matrix of the *basis* (the six planes, planes drawn beforehand, the sky terms), its
product with the residual, and chi^2. A fit's Jacobian columns are fixed linear combinations
of the basis (``J = basis T``), so ``J^T W J = T^T gram T`` and ``J^T W r = T^T rhs``: the
cost of a fit step is one derivative render plus about 2 (B + 1) B flops per pixel for ``B``
basis planes, and no array of the Jacobian's size is ever formed (nor passed to BLAS).

Every PSF a problem can have is accumulated (:func:`normal_psf`): a mixture is the kernel's own
(one fused pass); no PSF, the pixel (the pixel mixtures of :func:`mogviewer.render.api._parts`,
which depend on the galaxy's size, paired component by component: one fused pass too); a stamp
used exactly (:class:`~mogviewer.render.exact.ExactPsf`): its mixture's Gaussians drawn by the
derivative kernel, the residual's six planes added by FFT, then the rows accumulated (two
passes: the FFT term exists only for the whole image).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from .accumulate import _accumulate_rows
from .kernels import _derivs_kernel, _galaxy_kernel, _placed, _scratch


def _clear_sums_py(acc):
    gram, rhs, tot = acc[4], acc[5], acc[6]
    gram[:] = 0.0
    rhs[:] = 0.0
    tot[:] = 0.0


def _symmetrise_py(acc):
    gram = acc[4]
    for i in range(gram.shape[0]):
        for k in range(i):
            gram[i, k] = gram[k, i]


_clear_sums = numba.njit(cache=True, nogil=True)(_clear_sums_py)
_symmetrise = numba.njit(cache=True, nogil=True)(_symmetrise_py)


def _galaxy_normal_kernel_py(x, y, sxx, sxy, syy, prof, psf, out, scratch, acc):
    """Unit-flux galaxy (profile ``prof`` (3, M), PSF ``psf`` (6, K): as
    :func:`mogviewer.render.kernels._galaxy_kernel_py` with ``derivs``) drawn into ``out``
    (6, H, W, cleared) with the sums of ``acc`` accumulated on the way."""
    _clear_sums(acc)
    scratch = _placed(out, scratch, True)
    M = prof.shape[1]
    K = psf.shape[1]
    C = M * K
    amp = scratch[:C]
    mx = scratch[C:2 * C]
    my = scratch[2 * C:3 * C]
    cxx = scratch[3 * C:4 * C]
    cxy = scratch[4 * C:5 * C]
    cyy = scratch[5 * C:6 * C]
    vf = scratch[6 * C:7 * C]
    for m in range(M):
        vm = prof[1, m]
        for k in range(K):
            c = m * K + k
            amp[c] = prof[0, m] * psf[0, k]
            mx[c] = x + psf[1, k]
            my[c] = y + psf[2, k]
            cxx[c] = vm * sxx + psf[3, k]
            cxy[c] = vm * sxy + psf[4, k]
            cyy[c] = vm * syy + psf[5, k]
            vf[c] = prof[2, m]
    _derivs_kernel(amp, mx, my, cxx, cxy, cyy, vf, out, True, scratch[7 * C:], acc)
    _symmetrise(acc)


_galaxy_normal_kernel = numba.njit(cache=True, nogil=True)(_galaxy_normal_kernel_py)


def _galaxy_then_accumulate_py(x, y, sxx, sxy, syy, prof, psf, out, scratch, acc):
    """The same sums in two passes: the plain derivative kernel draws the whole image, then
    the rows are accumulated four at a time."""
    _clear_sums(acc)
    _galaxy_kernel(1.0, x, y, sxx, sxy, syy, prof, psf, out, True, scratch, True)
    H = out.shape[1]
    for r in range(0, H, 4):
        _accumulate_rows(acc, out, r, min(4, H - r), r)
    _symmetrise(acc)


_galaxy_then_accumulate = numba.njit(cache=True, nogil=True)(_galaxy_then_accumulate_py)


def _pairs_normal_kernel_py(x, y, sxx, sxy, syy, prof, psf, out, scratch, acc):
    """As :func:`_galaxy_normal_kernel_py`, for components given as pairs: profile column
    ``prof[:, c]`` (3, C) convolved with PSF component ``psf[:, c]`` (6, C), not every profile
    column with every PSF component (the pixel as the PSF takes one Gaussian for the wide
    galaxy components and the pixel mixture for the narrow ones)."""
    _clear_sums(acc)
    scratch = _placed(out, scratch, True)
    C = prof.shape[1]
    amp = scratch[:C]
    mx = scratch[C:2 * C]
    my = scratch[2 * C:3 * C]
    cxx = scratch[3 * C:4 * C]
    cxy = scratch[4 * C:5 * C]
    cyy = scratch[5 * C:6 * C]
    vf = scratch[6 * C:7 * C]
    for c in range(C):
        vm = prof[1, c]
        amp[c] = prof[0, c] * psf[0, c]
        mx[c] = x + psf[1, c]
        my[c] = y + psf[2, c]
        cxx[c] = vm * sxx + psf[3, c]
        cxy[c] = vm * sxy + psf[4, c]
        cyy[c] = vm * syy + psf[5, c]
        vf[c] = prof[2, c]
    _derivs_kernel(amp, mx, my, cxx, cxy, cyy, vf, out, True, scratch[7 * C:], acc)
    _symmetrise(acc)


_pairs_normal_kernel = numba.njit(cache=True, nogil=True)(_pairs_normal_kernel_py)


def _accumulate_drawn_py(out, acc):
    """The sums of ``acc`` over planes already drawn in ``out`` (6, H, W), four rows at a
    time."""
    _clear_sums(acc)
    H = out.shape[1]
    for r in range(0, H, 4):
        _accumulate_rows(acc, out, r, min(4, H - r), r)
    _symmetrise(acc)


_accumulate_drawn = numba.njit(cache=True, nogil=True)(_accumulate_drawn_py)


class NormalPsf:
    """A PSF that is not a plain mixture, as :class:`NormalAccumulator` and :class:`DnPlane`
    take it (made by :func:`normal_psf`).

    Attributes
    ----------
    psf : ExactPsf or None
        The stamp used exactly, or None (no PSF: the pixel).
    fast : ndarray (6, K) or None
        The packed Gaussians of an ExactPsf's mixture drawn as Gaussians (None: all of it is
        in the residual).
    """

    __slots__ = ("psf", "fast", "_pairs")

    def __init__(self, psf):
        from .api import _psf_packed
        from .exact import ExactPsf

        if psf is not None and type(psf) is not ExactPsf:
            raise TypeError(f"NormalPsf takes an ExactPsf or None, not {type(psf).__name__}")
        self.psf = psf
        self.fast = None if psf is None or psf.fast is None else _psf_packed(psf.fast)
        self._pairs = {}

    def pairs(self, pp, sxx, sxy, syy):
        """``(prof (3, C), psf (6, C))`` component pairs of the pixel as the PSF for profile
        columns ``pp`` (3, M) at shape ``S``: :func:`mogviewer.render.api._parts`, expanded
        (cached by which columns are narrow)."""
        from .api import _parts, _psf_packed

        parts = _parts(pp, None, sxx, sxy, syy)
        key = (id(pp), tuple(int(c.shape[1]) for c, _ in parts),
               tuple(id(m) for _, m in parts))
        hit = self._pairs.get(key)
        if hit is not None and hit[0] is pp:
            return hit[1], hit[2]
        profs, psfs = [], []
        for cols, mix in parts:
            q = _psf_packed(mix)
            M, K = cols.shape[1], q.shape[1]
            profs.append(np.repeat(cols, K, axis=1))
            psfs.append(np.tile(q, (1, M)))
        prof = np.ascontiguousarray(np.hstack(profs))
        psf = np.ascontiguousarray(np.hstack(psfs))
        if len(self._pairs) > 8:
            self._pairs.clear()
        self._pairs[key] = (pp, prof, psf)
        return prof, psf


def normal_psf(psf):
    """What :class:`NormalAccumulator` and :class:`DnPlane` take for a problem's PSF:
    the packed (6, K) array of a :class:`~mogviewer.mixture.Mixture` (the kernel's own path),
    or a :class:`NormalPsf` for an :class:`~mogviewer.render.exact.ExactPsf` or for None (no
    PSF: the pixel), so every problem can be fitted on accumulated normal equations."""
    from .api import _psf_packed
    from .exact import ExactPsf

    if psf is None or type(psf) is ExactPsf:
        return NormalPsf(psf)
    return _psf_packed(psf)


class _Planes(threading.local):
    """Per-thread image-sized buffers kept from one fit to the next, by role and shape: a 256 px
    fit's fourteen planes, allocated afresh, cost ~1 ms of page faults per fit. Their contents
    are never read before being written (the kernels clear what they draw into)."""

    def __init__(self):
        self.kept = {}
        self.in_use = False

    def claim(self):
        """True (and the buffers are the caller's until :meth:`release`) unless they are
        already in use in this thread (a fit started from another fit's callback)."""
        if self.in_use:
            return False
        self.in_use = True
        return True

    def release(self):
        self.in_use = False

    def get(self, role, shape, init=None):
        """The kept buffer of ``role`` and ``shape``; a new one is zeros, then ``init(buf)``
        if given (for contents that depend on the shape alone and that no kernel writes)."""
        key = (role, tuple(shape))
        buf = self.kept.get(key)
        if buf is None:
            if len(self.kept) > 16:
                self.kept.clear()
            buf = self.kept[key] = np.zeros(shape)
            if init is not None:
                init(buf)
        return buf


_planes = _Planes()


class NormalAccumulator:
    """Buffers and one call for the normal equations of a galaxy model on a fixed grid.

    Parameters
    ----------
    data, weights : ndarray (H, W)
        Pixels and ``1/sigma^2`` (0 = masked; the data there may be anything finite).
    n_ext : int
        Number of extra basis planes drawn beforehand (:attr:`ext`, filled by the caller).
    n_sky : {0, 1, 3}
        Sky terms in the basis: none, ``1``, or ``1, gx, gy`` (pixel offsets from the stamp
        centre, ``gx = x - (W-1)/2``, ``gy = y - (H-1)/2``).

    The basis is ordered: the kernel's planes (unit-flux image, d/dx, d/dy, d/dSxx, d/dSxy,
    d/dSyy), then ``ext[0 .. n_ext-1]``, then the sky terms; ``B = 6 + n_ext + n_sky``.
    """

    def __init__(self, data, weights, *, n_ext=0, n_sky=0, keep=False):
        if n_sky not in (0, 1, 3):
            raise ValueError(f"n_sky must be 0, 1 or 3, got {n_sky}")
        H, W = data.shape
        self.shape = (H, W)
        self.data = np.ascontiguousarray(data, dtype=np.float64)
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)
        if keep:
            self.out = _planes.get("out", (6, H, W))
            self.ext = _planes.get("ext", (n_ext, H, W))
        else:
            self.out = np.zeros((6, H, W))
            self.ext = np.zeros((n_ext, H, W))
        self.B = 6 + n_ext + n_sky
        NB = 6 + n_ext          # work rows (accumulate._accumulate_rows_py): basis, res, 1,
        # gx, gy, 0, weights; four rows long. The rows 1, gx and 0 are constant (the kernels
        # write only the others, and only before reading them): kept from fit to fit with
        # the other buffers

        def constant_rows(X):
            X[NB + 1] = 1.0
            X[NB + 2] = np.tile(np.arange(W, dtype=np.float64) - 0.5 * (W - 1), 4)

        if keep:
            self._X = _planes.get("X", (NB + 6, 4 * W), constant_rows)
        else:
            self._X = np.zeros((NB + 6, 4 * W))
            constant_rows(self._X)
        # the fused kernels draw into a ring of four rows (:attr:`ring`): the first six work
        # rows themselves (four image rows each), where the sums read them without a copy.
        # Not for H <= 4: the kernels then draw whole planes into that buffer (their ring is a
        # buffer of fewer rows than the image), whose rows the sums' copy would overwrite
        if H > 4:
            self._ring = self._X[:6].reshape(6, 4, W)
        else:
            self._ring = _planes.get("ring", (6, H, W)) if keep else np.zeros((6, H, W))
        self._rg = np.zeros((self.B + 12, self.B + 12))
        self._gram = np.zeros((self.B, self.B))
        self._rhs = np.zeros(self.B)
        self._tot = np.zeros(1)

    #: accumulate while the kernel draws (each group of rows still in cache), or draw the
    #: whole image and then accumulate; side by side the two took the same time within the
    #: machine's noise (64 and 256 px, with and without PSF: benchmarks/NOTES.md)
    fused = True
    #: the fused kernels draw into a ring of four rows, not into :attr:`out` (the sums are
    #: what a fit wants: the six planes of a 256 px image, 3 MB, then never leave the cache);
    #: false: the whole planes are drawn into :attr:`out` as well (tests compare them), with
    #: the same sums bit for bit
    ring = True

    def __call__(self, x, y, S3, prof_packed, psf_packed, coef):
        """Draw the unit-flux galaxy at ``(x, y)`` with shape ``S3 = (Sxx, Sxy, Syy)`` (into
        :attr:`out` unless :attr:`ring`) and return ``(gram, rhs, chi2)`` for the model
        ``sum_b coef[b] basis_b``:
        ``gram`` (B, B) symmetric, ``rhs`` (B,), ``chi2`` float (NaN or inf if the model is
        not finite)."""
        if type(coef) is not np.ndarray or coef.dtype != np.float64 or coef.shape != (self.B,):
            coef = np.ascontiguousarray(coef, dtype=np.float64)
            if coef.shape != (self.B,):
                raise ValueError(f"coef must have {self.B} entries, got shape {coef.shape}")
        gram = self._gram
        H, W = self.shape
        acc = self.sums(coef)
        if type(psf_packed) is NormalPsf:
            self._special(x, y, S3, prof_packed, psf_packed, acc)
            return gram.copy(), self._rhs.copy(), float(self._tot[0])
        C = prof_packed.shape[1] * psf_packed.shape[1]
        sc = _scratch.full(W, C)
        if self.fused:
            _galaxy_normal_kernel(float(x), float(y), float(S3[0]), float(S3[1]),
                                  float(S3[2]), prof_packed, psf_packed,
                                  self._ring if self.ring else self.out, sc, acc)
        else:
            _galaxy_then_accumulate(float(x), float(y), float(S3[0]), float(S3[1]),
                                    float(S3[2]), prof_packed, psf_packed, self.out, sc, acc)
        return gram.copy(), self._rhs.copy(), float(self._tot[0])

    def sums(self, coef):
        """The kernels' ``acc`` argument for the model coefficients ``coef``: ``(data, weights,
        ext, coef, gram, rhs, tot, X, rg)``, the sums (gram, rhs, tot) in this accumulator's
        buffers (:mod:`mogviewer.render.accumulate`)."""
        return (self.data, self.weights, self.ext, coef, self._gram, self._rhs, self._tot,
                self._X, self._rg)

    def _special(self, x, y, S3, pp, npsf, acc):
        """The sums for a :class:`NormalPsf`: no PSF in one fused pass over the component
        pairs; an ExactPsf as its Gaussians plus the residual's planes, then accumulated."""
        sxx, sxy, syy = float(S3[0]), float(S3[1]), float(S3[2])
        W = self.shape[1]
        if npsf.psf is None:
            prof, psf = npsf.pairs(pp, sxx, sxy, syy)
            sc = _scratch.full(W, prof.shape[1])
            _pairs_normal_kernel(float(x), float(y), sxx, sxy, syy, prof, psf,
                                 self._ring if self.ring else self.out, sc, acc)
            return
        out = self.out
        if npsf.fast is None:
            out.fill(0.0)
        else:
            sc = _scratch.full(W, pp.shape[1] * npsf.fast.shape[1])
            _galaxy_kernel(1.0, float(x), float(y), sxx, sxy, syy, pp, npsf.fast, out, True, sc,
                           True)
        npsf.psf.add_residual(out, 1.0, x, y, (sxx, sxy, syy), pp[0], pp[1], True)
        _accumulate_drawn(out, acc)



def _warm_normal():
    """Compile (or load) the accumulating kernels: one signature serves every basis size."""
    acc = NormalAccumulator(np.zeros((4, 4)), np.ones((4, 4)), n_ext=0, n_sky=1)
    acc(1.5, 1.5, (1.0, 0.1, 1.0), np.ones((3, 1)), np.vstack([np.ones(1)] + [np.zeros(1)] * 5),
        np.zeros(acc.B))
    # no PSF (the pixel, paired components) and the two-pass accumulation of exact mode
    prof = np.ones((3, 1))
    acc(1.5, 1.5, (1.0, 0.1, 1.0), prof, NormalPsf(None), np.zeros(acc.B))
    _accumulate_drawn(acc.out, (acc.data, acc.weights, acc.ext, np.zeros(acc.B), acc._gram,
                                acc._rhs, acc._tot, acc._X, acc._rg))


#: Step in n of :class:`DnPlane`'s central difference (see there): the difference's error
#: against :func:`mogviewer.render.render_galaxy_dn` was below 1e-8 of the plane's peak for
#: n = 0.7-5.5 and r_e = 1.5-30 px with the Moffat mixture of tests/data/real/imfit-sdss (the
#: truncation error grows as h^2: 2e-7 at h = 1e-4 for n = 0.7; rounding as 1/h, ~1e-14 / h).
DN_STEP = 1e-5


class DnPlane:
    """``d image / d n`` of a unit-flux galaxy whose profile depends on ``n``, into a given
    plane.

    With a mixture PSF it is the central difference ``(I(n + h) - I(n - h)) / 2h`` of the
    image with ``a_m(n) + h da_m/dn`` and ``v_m(n) + h dv_m/dn`` (the family's amplitudes and
    variances to first order: exact in the amplitudes, which enter linearly, O(h^2) in the
    variances), drawn as one image of 2 M components with amplitudes ``+-(a_m +- h da_m) / 2h``
    (:data:`DN_STEP`: within 1e-8 of the plane's peak of the analytic formula of
    :func:`mogviewer.render.render_galaxy_dn`, which takes an image render *and* a derivative
    render with its combination: 2.5-3x the time at 256 px). A column accurate to 1e-8 moves
    neither the optimum (chi^2 is exact) nor the covariance by anything that shows. No PSF
    or a stamp used exactly: :func:`~mogviewer.render.render_galaxy_dn` itself."""

    def __init__(self, shape, *, keep=False):
        self.shape = tuple(shape)
        self._prof = None

    def __call__(self, out, x, y, S3, family, psf_packed):
        if type(psf_packed) is NormalPsf:
            # no PSF or a stamp used exactly: the render path's d/dn (same formula)
            from .api import render_galaxy_dn

            out[:] = render_galaxy_dn(1.0, x, y, S3, family, family.damps, family.dvariances,
                                      psf_packed.psf, out.shape)
            return
        h = DN_STEP
        pa = np.asarray(family.amps, dtype=np.float64)
        pv = np.asarray(family.variances, dtype=np.float64)
        da = np.asarray(family.damps, dtype=np.float64)
        dv = np.asarray(family.dvariances, dtype=np.float64)
        M = pa.shape[0]
        prof = self._prof
        if prof is None or prof.shape[1] != 2 * M:
            prof = self._prof = np.zeros((3, 2 * M))
        prof[0, :M] = (pa + h * da) / (2.0 * h)
        prof[0, M:] = -(pa - h * da) / (2.0 * h)
        prof[1, :M] = pv + h * dv
        prof[1, M:] = pv - h * dv
        sxx, sxy, syy = (float(v) for v in S3)
        W = out.shape[1]
        _galaxy_kernel(1.0, float(x), float(y), sxx, sxy, syy, prof, psf_packed, out[None],
                       False, _scratch.full(W), True)
