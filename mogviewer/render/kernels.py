"""The compiled (numba) kernels that evaluate mixtures of Gaussians at pixel centres.

A compiled kernel that keeps ``exp`` out of the pixel loop. For every component and every
block of rows it completes the square in x about the row-wise peak ``x_c(y)``,
``A (x - x_c(y0) - s t)^2 + R dy^2`` with ``s = C_xy / C_yy``, and factors it into a column
vector ``exp(A X^2)`` times a cross vector ``exp(-2 A s t X)``: one vector that advances row
by row by one multiplication, scaled by a row factor that follows a recurrence too. Blocks
are short enough (``|s| t sqrt(-A) <= 15``) that no factor can overflow or underflow,
however elongated the component (q -> 0.05 at any angle); column vectors of wide blocks are
built by stride-8 multiplicative recurrences (which vectorise), narrow or extreme ones by
recurrences started at the peak; all restart from an exact ``exp`` at fixed intervals. The
inner loops have no loop-carried dependency and use unsigned indices, so they vectorise.
The image is added four rows per pass over the block's whole width (the vector is loaded
and stored once per four rows), so it also receives pixels just outside the cut, each below
``exp(-36)`` of its component's peak. The derivative planes are drawn row by row for all
components at once: each component keeps its block state and writes its values on the
row, and the six planes are updated four components per pass with the sums held in
registers, so each plane is stored once per four components. A pass covers its members'
exp(-36) spans on the row, padded to whole 8-wide vectors (at least two), so the planes too
receive values just beyond the cut (each below ~1e-14 of its plane's peak). The pass and
the row-buffer fills are inlined into the kernel and take each row as its own argument,
compiled ``noalias`` (:func:`_njit_noalias`): as calls, and with the run-time overlap
checks LLVM otherwise puts before every vectorised loop, they cost about a fifth of it.
Arguments are packed into few arrays: numba types every argument on every call.

All work arrays of both kernels live in one per-thread buffer placed at a fixed offset (mod
4096 bytes) from the output (:func:`_placed_py`): where the allocator happened to put them
changed the time of a render by up to 1.7x.

The kernels agree with :mod:`mogviewer.render.reference` to ~1e-13 of the peak
(``tests/test_render.py``). Speed and its history: ``benchmarks/NOTES.md``.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np

from .accumulate import _accumulate_rows
from .reference import CUT_EXPONENT

#: Multiplicative recurrences in the kernel restart from an exact ``exp`` every RESEED steps,
#: which bounds their rounding error to ~RESEED^2 * 1e-16 relative.
RESEED = 32
#: Blocks of rows end after at most this many rows, so that the column x cross vector, which is
#: advanced by one multiplication per row, restarts from exact values (its rounding error grows
#: with the row count: up to 7e-12 of the peak over 1500 rows without this).
RESTART_ROWS = 128



def _njit_noalias(**options):
    """``numba.njit(**options)`` whose compiled function declares its array arguments
    ``noalias`` (no two of them overlap where one is written), so that LLVM vectorises its
    loops without run-time overlap checks. numba has no public option for this: the flag is
    set through the dispatcher's compiler hook ``_customize_flags``; if that hook is missing
    (another numba version) this is plain ``numba.njit``, correct and somewhat slower."""
    def deco(f):
        disp = numba.njit(**options)(f)
        comp = getattr(disp, "_compiler", None)
        if comp is not None and hasattr(comp, "_customize_flags"):
            base = type(comp)

            class _NoAliasCompiler(base):
                def _customize_flags(self, flags):
                    flags = base._customize_flags(self, flags)
                    flags.noalias = True
                    return flags

            comp.__class__ = _NoAliasCompiler
        return disp
    return deco


def _geometry_py(amp, mx, my, cxx, cxy, cyy, H):
    """A component's drawing constants (module docstring): ``ok, norm, A, R, s, sa, wmax, r_lo,
    r_hi, L`` -- ``ok`` is false when it has nothing to draw on rows ``0 .. H-1``."""
    det = cxx * cyy - cxy * cxy
    if not (det > 0.0 and cxx > 0.0 and cyy > 0.0) or not math.isfinite(det):
        # not positive definite in floating point (q below ~1e-8 loses the determinant to
        # cancellation): nothing sensible to draw; callers keep q >= 1e-4
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, -1, 1
    norm = amp / (2.0 * math.pi * math.sqrt(det))
    A = -0.5 * cyy / det              # x-curvature of the exponent at fixed y (< 0)
    R = -0.5 / cyy                    # exponent at the row peak: R dy^2
    s = cxy / cyy                     # row peak moves by s per row
    sa = math.sqrt(-A)
    wmax = math.sqrt(CUT_EXPONENT) / sa   # widest row half-width
    dymax = math.sqrt(2.0 * CUT_EXPONENT * cyy)
    r_lo = max(0, int(math.ceil(my - dymax)))
    r_hi = min(H - 1, int(math.floor(my + dymax)))
    z = abs(s) * sa
    if z > 0.0:   # rows per block: no factor over- or underflows, and rounding stays bounded
        L = max(1, int(min(RESTART_ROWS, 15.0 / z)))    # min first: 15 / z may not fit an int
    else:
        L = max(1, min(RESTART_ROWS, r_hi - r_lo + 1))
    return r_lo <= r_hi, norm, A, R, s, sa, wmax, r_lo, r_hi, L


def _block_box_py(r0, r1, mx, my, s, wmax, W):
    """Row-peak position ``xc0`` on row ``r0`` and the columns ``jlo .. jhi`` a block of rows
    ``r0 .. r1`` can touch (``jlo > jhi``: none)."""
    xc0 = mx + s * (r0 - my)
    span = s * (r1 - r0)
    jlo = max(0, int(math.ceil(xc0 + min(0.0, span) - wmax)))
    jhi = min(W - 1, int(math.floor(xc0 + max(0.0, span) + wmax)))
    return xc0, jlo, jhi


def _row_factor_py(norm, A, R, s, t, dy0):
    """Row ``t`` of a block whose first row is ``dy0`` from the centre: the row factor
    ``norm exp(A s^2 t^2 + R dy^2)`` and its next ratio, exactly (where recurrences restart)."""
    alpha = A * s * s + R
    dy = dy0 + t
    return (norm * math.exp(A * s * s * t * t + R * dy * dy),
            math.exp(alpha * (2.0 * t + 1.0) + 2.0 * R * dy0))


_geometry = numba.njit(cache=True, nogil=True)(_geometry_py)
_block_box = numba.njit(cache=True, nogil=True)(_block_box_py)
_row_factor = numba.njit(cache=True, nogil=True)(_row_factor_py)


def _rows_image_py(out, r0, r1, jlo, nu, col, cstep, norm, A, R, s, dy0):
    """Add the rows ``r0..r1`` of one block of one component to the image plane ``out[0]``.

    Row ``t = r - r0`` is ``rowterm_t * col``, after which ``col *= cstep`` (see the module
    docstring). The whole block width ``jlo .. jlo + nu - 1`` is evaluated (pixels outside the
    component's ellipse but inside the block's box are below ``exp(-36)`` of its peak), so one
    loop both adds a row and advances the vector; four rows go through each pass, loading and
    storing ``col`` once per four rows: the per-row loop overhead, not the arithmetic, is what
    costs at small stamps (1.5-1.7x faster at 64-256 px than one row per pass).
    """
    rowterm, rstep = _row_factor(norm, A, R, s, 0.0, dy0)
    e2alpha = math.exp(2.0 * (A * s * s + R))
    jau = np.uint64(jlo)
    n = np.uint64(nu)
    r = r0
    while r <= r1:
        t = r - r0
        if r + 3 <= r1 and t % RESEED <= RESEED - 4:   # four rows, no reseed among them
            rt0 = rowterm
            rowterm *= rstep
            rstep *= e2alpha
            rt1 = rowterm
            rowterm *= rstep
            rstep *= e2alpha
            rt2 = rowterm
            rowterm *= rstep
            rstep *= e2alpha
            rt3 = rowterm
            for i in range(n):
                jj = jau + i
                c = col[jj]
                st = cstep[jj]
                out[0, r, jj] += rt0 * c
                c *= st
                out[0, r + 1, jj] += rt1 * c
                c *= st
                out[0, r + 2, jj] += rt2 * c
                c *= st
                out[0, r + 3, jj] += rt3 * c
                col[jj] = c * st
            r += 4
        else:
            for i in range(n):
                jj = jau + i
                out[0, r, jj] += rowterm * col[jj]
                col[jj] *= cstep[jj]
            r += 1
        if r <= r1:
            t = r - r0
            if t % RESEED == 0:   # restart the row recurrence exactly
                rowterm, rstep = _row_factor(norm, A, R, s, float(t), dy0)
            else:
                rowterm *= rstep
                rstep *= e2alpha


_rows_image = numba.njit(cache=True, nogil=True)(_rows_image_py)


def _fill_col_py(col, jlo, nu, X0, A, h):
    """``col[jlo + d] = exp(A (X0 + d)^2)`` for ``0 <= d < nu`` (``A < 0``).

    Stride-8 recurrences ``col[d + 8] = col[d] h[d]``, ``h[d + 8] = h[d] exp(128 A)`` with
    ``h[d] = exp(A (16 (X0 + d) + 64))``: no dependency between neighbours, so the loop
    vectorises (a chain from one pixel to the next cannot). Restarted exactly every 256 pixels,
    so rounding grows to at most ~32^2 / 2 ulp. The caller keeps every factor within
    exp(+-700). ``h`` is scratch of length ``>= min(nu, 256)``.
    """
    e2a = math.exp(2.0 * A)
    e16a = math.exp(16.0 * A)
    e128a = math.exp(128.0 * A)
    for c0 in range(0, nu, 256):
        n = min(nu - c0, 256)
        X = X0 + c0
        v = math.exp(A * X * X)
        r = math.exp(A * (2.0 * X + 1.0))
        hv = math.exp(A * (16.0 * X + 64.0))
        b = np.uint64(jlo + c0)
        for d in range(np.uint64(min(n, 8))):
            col[b + d] = v
            h[d] = hv
            v *= r
            r *= e2a
            hv *= e16a
        for d in range(np.uint64(8), np.uint64(n)):
            col[b + d] = col[b + d - np.uint64(8)] * h[d - np.uint64(8)]
            h[d] = h[d - np.uint64(8)] * e128a


def _fill_geom_py(cstep, jlo, nu, X0, g):
    """``cstep[jlo + d] = exp(g (X0 + d))`` for ``0 <= d < nu``, by a stride-8 recurrence
    restarted exactly every 256 pixels (see :func:`_fill_col_py`)."""
    eg = math.exp(g)
    eg8 = math.exp(8.0 * g)
    for c0 in range(0, nu, 256):
        n = min(nu - c0, 256)
        w = math.exp(g * (X0 + c0))
        b = np.uint64(jlo + c0)
        for d in range(np.uint64(min(n, 8))):
            cstep[b + d] = w
            w *= eg
        for d in range(np.uint64(8), np.uint64(n)):
            cstep[b + d] = cstep[b + d - np.uint64(8)] * eg8


_fill_col = numba.njit(cache=True, nogil=True)(_fill_col_py)
_fill_geom = numba.njit(cache=True, nogil=True)(_fill_geom_py)


def _block_vectors_py(col, cstep, jlo, jhi, xc0, A, s, h):
    """Fill ``col[j] = exp(A (j - xc0)^2)`` and ``cstep[j] = exp(-2 A s (j - xc0))`` for
    ``jlo <= j <= jhi`` (one block of one component; ``h`` is scratch)."""
    nu = jhi - jlo + 1
    X0 = jlo - xc0
    Xm = max(abs(X0), abs(X0 + nu - 1))
    g = -2.0 * A * s
    if nu >= 16 and -A * (16.0 * Xm + 128.0) < 700.0 and -A * Xm * Xm < 700.0:
        # wide blocks: stride-8 recurrences across the block, which vectorise (no factor
        # leaves [exp(-700), exp(700)] under the condition above)
        _fill_col(col, jlo, nu, X0, A, h)
        _fill_geom(cstep, jlo, nu, X0, g)
    else:
        # column vector exp(A X^2), X = j - xc0, by recurrences from the peak outwards
        jp = int(math.floor(xc0 + 0.5))
        if jp < jlo:
            jp = jlo
        if jp > jhi:
            jp = jhi
        X = jp - xc0
        e2a = math.exp(2.0 * A)
        col[jp] = math.exp(A * X * X)
        ratio = math.exp(A * (2.0 * X + 1.0))
        for j in range(jp + 1, jhi + 1):
            if (j - jp) % RESEED == 0:   # restart the recurrence exactly (bounded rounding)
                Xj = j - 1 - xc0
                ratio = math.exp(A * (2.0 * Xj + 1.0))
            col[j] = col[j - 1] * ratio
            ratio *= e2a
        ratio = math.exp(A * (1.0 - 2.0 * X))
        for j in range(jp - 1, jlo - 1, -1):
            if (jp - j) % RESEED == 0:
                Xj = j + 1 - xc0
                ratio = math.exp(A * (1.0 - 2.0 * Xj))
            col[j] = col[j + 1] * ratio
            ratio *= e2a
        # cross step exp(-2 A s X_j), linear in j
        eg = math.exp(g)
        for j in range(jlo, jhi + 1):
            if (j - jlo) % RESEED == 0:
                cstep[j] = math.exp(g * (j - xc0))
            else:
                cstep[j] = cstep[j - 1] * eg


_block_vectors = numba.njit(cache=True, nogil=True)(_block_vectors_py)


def _add_component_py(amp, mx, my, cxx, cxy, cyy, out, col, cstep, h):
    """Add one Gaussian to the image plane ``out[0]`` (see the module docstring); ``col``,
    ``cstep`` and ``h`` are scratch vectors of length >= W."""
    ok, norm, A, R, s, sa, wmax, r_lo, r_hi, L = _geometry(amp, mx, my, cxx, cxy, cyy,
                                                           out.shape[1])
    if not ok:
        return
    r0 = r_lo
    while r0 <= r_hi:
        r1 = min(r0 + L - 1, r_hi)
        xc0, jlo, jhi = _block_box(r0, r1, mx, my, s, wmax, out.shape[2])
        if jlo <= jhi:
            # col becomes col * cross: exp(A X^2) exp(-2 A s t X), advanced row by row
            _block_vectors(col, cstep, jlo, jhi, xc0, A, s, h)
            _rows_image(out, r0, r1, jlo, jhi - jlo + 1, col, cstep, norm, A, R, s, r0 - my)
        r0 = r1 + 1


def _group_pass_py(o0, o1, o2, o3, o4, o5, g0, g1, g2, g3, ua, n, c0, c1, c2, c3, BX, BY, P00,
                  P01, P11, HV, assign):
    """Add four components' values ``g0[ua + i]``, ..., ``g3[ua + i]`` (``0 <= i < n``; rows of the
    row buffer ``G``, members ``c0``-``c3``) to the image row ``o0`` and, times their
    derivative factors (module docstring), to the rows ``o1``-``o5`` of the planes 1-5.

    The six sums are formed in registers and stored once per four components: storing every
    plane for every component costs more than the arithmetic (1.8x at 256 px rows). With
    ``assign`` the sums replace what the rows hold (the first group of a row: no zeroing).
    The rows are separate arguments so that, compiled ``noalias`` (:func:`_njit_noalias`),
    LLVM knows no store can change what another row holds.
    """
    bx0, bx1, bx2, bx3 = BX[c0], BX[c1], BX[c2], BX[c3]
    by0, by1, by2, by3 = BY[c0], BY[c1], BY[c2], BY[c3]
    a0, a1, a2, a3 = P00[c0], P00[c1], P00[c2], P00[c3]
    b0, b1, b2, b3 = P01[c0], P01[c1], P01[c2], P01[c3]
    d0, d1, d2, d3 = P11[c0], P11[c1], P11[c2], P11[c3]
    h0, h1, h2, h3 = HV[c0], HV[c1], HV[c2], HV[c3]
    if assign:
        u = np.uint64(ua)
        for i in range(np.uint64(n)):
            fi = np.float64(i)
            j = u + i
            g = g0[j]
            ux = bx0 + a0 * fi
            uy = by0 + b0 * fi
            hg = h0 * g
            s0 = g
            s1 = g * ux
            s2 = g * uy
            s3 = hg * (ux * ux - a0)
            s4 = hg * ((ux + ux) * uy - (b0 + b0))
            s5 = hg * (uy * uy - d0)
            g = g1[j]
            ux = bx1 + a1 * fi
            uy = by1 + b1 * fi
            hg = h1 * g
            s0 += g
            s1 += g * ux
            s2 += g * uy
            s3 += hg * (ux * ux - a1)
            s4 += hg * ((ux + ux) * uy - (b1 + b1))
            s5 += hg * (uy * uy - d1)
            g = g2[j]
            ux = bx2 + a2 * fi
            uy = by2 + b2 * fi
            hg = h2 * g
            s0 += g
            s1 += g * ux
            s2 += g * uy
            s3 += hg * (ux * ux - a2)
            s4 += hg * ((ux + ux) * uy - (b2 + b2))
            s5 += hg * (uy * uy - d2)
            g = g3[j]
            ux = bx3 + a3 * fi
            uy = by3 + b3 * fi
            hg = h3 * g
            s0 += g
            s1 += g * ux
            s2 += g * uy
            s3 += hg * (ux * ux - a3)
            s4 += hg * ((ux + ux) * uy - (b3 + b3))
            s5 += hg * (uy * uy - d3)
            o0[j] = s0
            o1[j] = s1
            o2[j] = s2
            o3[j] = s3
            o4[j] = s4
            o5[j] = s5
    else:
        u = np.uint64(ua)
        for i in range(np.uint64(n)):
            fi = np.float64(i)
            j = u + i
            g = g0[j]
            ux = bx0 + a0 * fi
            uy = by0 + b0 * fi
            hg = h0 * g
            s0 = g
            s1 = g * ux
            s2 = g * uy
            s3 = hg * (ux * ux - a0)
            s4 = hg * ((ux + ux) * uy - (b0 + b0))
            s5 = hg * (uy * uy - d0)
            g = g1[j]
            ux = bx1 + a1 * fi
            uy = by1 + b1 * fi
            hg = h1 * g
            s0 += g
            s1 += g * ux
            s2 += g * uy
            s3 += hg * (ux * ux - a1)
            s4 += hg * ((ux + ux) * uy - (b1 + b1))
            s5 += hg * (uy * uy - d1)
            g = g2[j]
            ux = bx2 + a2 * fi
            uy = by2 + b2 * fi
            hg = h2 * g
            s0 += g
            s1 += g * ux
            s2 += g * uy
            s3 += hg * (ux * ux - a2)
            s4 += hg * ((ux + ux) * uy - (b2 + b2))
            s5 += hg * (uy * uy - d2)
            g = g3[j]
            ux = bx3 + a3 * fi
            uy = by3 + b3 * fi
            hg = h3 * g
            s0 += g
            s1 += g * ux
            s2 += g * uy
            s3 += hg * (ux * ux - a3)
            s4 += hg * ((ux + ux) * uy - (b3 + b3))
            s5 += hg * (uy * uy - d3)
            v0 = o0[j]       # all loads before the stores: the six planes lie a
            v1 = o1[j]       # multiple of 4096 bytes apart, so a load after a store
            v2 = o2[j]       # to another plane waits for it (4K aliasing)
            v3 = o3[j]
            v4 = o4[j]
            v5 = o5[j]
            o0[j] = v0 + s0
            o1[j] = v1 + s1
            o2[j] = v2 + s2
            o3[j] = v3 + s3
            o4[j] = v4 + s4
            o5[j] = v5 + s5


def _fill_four_py(g0, g1, g2, g3, col, cst, base, n, rt0, rt1, rt2, rt3):
    """Write four rows of a component's values, ``g_k[j] = rt_k col[j] cst[j]^k`` for
    ``base <= j < base + n``, and advance ``col`` by four rows (``col *= cst^4``). Separate
    rows, compiled ``noalias`` and inlined: LLVM then needs no run-time overlap checks
    between the five rows it stores and the two it loads (they cost ~1.7 % of a derivative
    call at 128 px)."""
    for i in range(n):
        jj = base + i
        v = col[jj]
        st = cst[jj]
        g0[jj] = rt0 * v
        v *= st
        g1[jj] = rt1 * v
        v *= st
        g2[jj] = rt2 * v
        v *= st
        g3[jj] = rt3 * v
        col[jj] = v * st


def _fill_one_py(g, col, cst, base, n, rt):
    """One row of :func:`_fill_four_py`: ``g[j] = rt col[j]``, then ``col *= cst``."""
    for i in range(n):
        jj = base + i
        g[jj] = rt * col[jj]
        col[jj] *= cst[jj]


def _derivs_kernel_py(amp, mx, my, cxx, cxy, cyy, vfac, out, clear, work, acc=None):
    """Add C components and their derivative planes to ``out`` (6, H, W), row by row; with
    ``clear``, ``out`` is zeroed first, one row at a time just before the row is drawn (while
    it is in cache).

    Each component keeps the state of :func:`_add_component_py` (its current block's column x
    cross vector, row factor and recurrences) in per-component arrays; on every row each writes
    its values over its block's width to a row buffer ``G`` (zero elsewhere within the passes:
    :func:`_refill_span_py` clears what an earlier block left, and a pass zeroes the pixels
    outside the interval a buffer is known to hold), and the planes
    are updated four components at a time (:func:`_group_pass_py`) over the union of the
    members' exp(-36) spans on the row, padded to whole vectors; components are taken in order
    of size so that the four spans are alike.
    """
    H = out.shape[1]
    W = out.shape[2]
    if acc is not None:         # the image's height: with sums, ``out`` may be a ring of rows
        H = acc[0].shape[0]
    # ring: ``out`` holds only the current group of four rows (row r in out[:, r - r4]), the
    # sums being all the caller wants: the planes of a 256 px image (3 MB) no longer leave the
    # cache (rows beyond H in a short image are the same either way)
    ring = out.shape[1] < H
    C = amp.shape[0]
    Wp = W + 8
    # Everything lives in ``work`` (reused from call to call: :func:`_work_size_py`), so where
    # it lies relative to ``out`` does not change with what else the program allocates (that
    # moved this kernel's time by up to 1.7x): the components' state as rows of one float and
    # one integer table, then the row vectors; G's extra component C is zero (group padding)
    if work.shape[0] < _work_size(C, W):
        work = np.empty(_work_size(C, W))
    F = work[:19 * (C + 1)].reshape((19, C + 1))
    F[:] = 0.0
    o = 19 * (C + 1)
    Iw = work[o:o + 32 * C].view(np.int64).reshape((32, C))
    Iw[:] = 0
    o += 32 * C
    act = work[o:o + 4 * C].view(np.int64).reshape((4, C))
    o += 4 * C
    nact = work[o:o + 4].view(np.int64)
    o += 4
    order = work[o:o + C].view(np.int64)
    o += C
    col = work[o:o + C * Wp].reshape((C, Wp))
    o += C * Wp
    cst = work[o:o + C * Wp].reshape((C, Wp))
    o += C * Wp
    G = work[o:o + 4 * (C + 1) * Wp].reshape((C + 1, 4, Wp))
    o += 4 * (C + 1) * Wp
    h = work[o:o + Wp]
    G[C] = 0.0
    NORM, A_, R_, S_, SA, WMAX = F[0], F[1], F[2], F[3], F[4], F[5]
    P00, P01, P11, HV, BX, BY = F[6], F[7], F[8], F[9], F[10], F[11]
    XC0, ROWT, RSTEP, E2AL, size = F[12], F[13], F[14], F[15], F[16]
    RLO, RHI, LL, B0, B1, JLO, JHI, okv = Iw[0], Iw[1], Iw[2], Iw[3], Iw[4], Iw[5], Iw[6], Iw[7]
    JA = Iw[8:12].T
    JB = Iw[12:16].T
    # G[c, k] holds the component's values on its fill span [FA, FB] and zeros on the rest of
    # [VA, VB] (an interval that grows as passes need it, so most pixels are zeroed once)
    FA = Iw[16:20].T
    FB = Iw[20:24].T
    VA = Iw[24:28].T
    VB = Iw[28:32].T
    FB[:] = -1
    VB[:] = -1
    FA[:] = W
    VA[:] = W
    B1[:] = -1
    rmin = H
    rmax = -1
    for c in range(C):
        ok, nrm, A, R, s, sa, wmax, rlo, rhi, L = _geometry(amp[c], mx[c], my[c], cxx[c], cxy[c],
                                                            cyy[c], H)
        if not ok:
            continue
        NORM[c] = nrm
        A_[c] = A
        R_[c] = R
        S_[c] = s
        SA[c] = sa
        WMAX[c] = wmax
        RLO[c] = rlo
        RHI[c] = rhi
        LL[c] = L
        det = cxx[c] * cyy[c] - cxy[c] * cxy[c]
        P00[c] = cyy[c] / det
        P01[c] = -cxy[c] / det
        P11[c] = cxx[c] / det
        HV[c] = 0.5 * vfac[c]
        okv[c] = 1
        size[c] = cxx[c] + cyy[c]
        rmin = min(rmin, RLO[c])
        rmax = max(rmax, RHI[c])
    order[:] = np.argsort(size[:C])
    if clear and not ring:
        for r in range(H):
            if r < rmin or r > rmax:
                _zero_row(out, r, 0, W)
    for r4 in range(rmin, rmax + 1, 4):        # four rows at a time
        nk = min(4, rmax + 1 - r4)
        rb = r4 if ring else 0                 # row r of the image is row r - rb of out
        nact[:] = 0
        for q in range(C):
            c = np.uint64(order[q])      # unsigned: indexing needs no wraparound code
            if okv[c] == 0 or r4 + nk - 1 < RLO[c] or r4 > RHI[c]:
                continue
            A = A_[c]
            R = R_[c]
            s = S_[c]
            k = 0
            while k < nk:
                r = r4 + k
                if r < RLO[c] or r > RHI[c]:
                    k += 1
                    continue
                dy = r - my[c]
                # the next two branches are _block_box and _row_factor written out: calls here
                # cost measurably (benchmarks/NOTES.md, "Renderer kernels")
                if r > B1[c]:                   # a new block starts on this row
                    r1 = min(r + LL[c] - 1, RHI[c])
                    xc0 = mx[c] + s * dy
                    span = s * (r1 - r)
                    JLO[c] = max(0, int(math.ceil(xc0 + min(0.0, span) - WMAX[c])))
                    JHI[c] = min(W - 1, int(math.floor(xc0 + max(0.0, span) + WMAX[c])))
                    B0[c] = r
                    B1[c] = r1
                    XC0[c] = xc0
                    if JLO[c] <= JHI[c]:
                        _block_vectors(col[c], cst[c], JLO[c], JHI[c], xc0, A, s, h)
                        alpha = A * s * s + R
                        ROWT[c] = NORM[c] * math.exp(R * dy * dy)
                        RSTEP[c] = math.exp(alpha + 2.0 * R * dy)
                        E2AL[c] = math.exp(2.0 * alpha)
                elif JLO[c] <= JHI[c]:         # the row factor moves on to this row
                    t = r - B0[c]
                    if t % RESEED == 0:         # restart its recurrence exactly
                        dy0 = B0[c] - my[c]
                        alpha = A * s * s + R
                        ROWT[c] = NORM[c] * math.exp(A * s * s * t * t + R * dy * dy)
                        RSTEP[c] = math.exp(alpha * (2.0 * t + 1.0) + 2.0 * R * dy0)
                    else:
                        ROWT[c] *= RSTEP[c]
                        RSTEP[c] *= E2AL[c]
                jlo = JLO[c]
                jhi = JHI[c]
                if jlo > jhi:
                    k += 1
                    continue
                base = np.uint64(jlo)
                n = np.uint64(jhi - jlo + 1)
                t = r - B0[c]
                four = k == 0 and nk == 4 and r + 3 <= B1[c] and t % RESEED <= RESEED - 4
                for kk in range(k, 4 if four else k + 1):
                    _refill_span(G, c, kk, jlo, jhi, FA, FB, VA, VB)
                if four:
                    # four rows in one pass over the block (no reseed among them)
                    rt0 = ROWT[c]
                    rt1 = rt0 * RSTEP[c]
                    RSTEP[c] *= E2AL[c]
                    rt2 = rt1 * RSTEP[c]
                    RSTEP[c] *= E2AL[c]
                    rt3 = rt2 * RSTEP[c]
                    RSTEP[c] *= E2AL[c]
                    ROWT[c] = rt3
                    _fill_four(G[c, 0], G[c, 1], G[c, 2], G[c, 3], col[c], cst[c], base, n, rt0,
                               rt1, rt2, rt3)
                    kend = 4
                else:
                    _fill_one(G[c, k], col[c], cst[c], base, n, ROWT[c])
                    kend = k + 1
                # the rows' spans inside the exp(-36) ellipse
                for kk in range(k, kend):
                    dyk = r4 + kk - my[c]
                    h2 = CUT_EXPONENT + R * dyk * dyk
                    if h2 < 0.0:
                        continue
                    half = math.sqrt(h2) / SA[c]
                    xc = XC0[c] + s * (r4 + kk - B0[c])
                    ja = max(jlo, int(math.ceil(xc - half)))
                    jb = min(jhi, int(math.floor(xc + half)))
                    if ja > jb:
                        continue
                    JA[c, kk] = ja
                    JB[c, kk] = jb
                    act[kk, nact[kk]] = c
                    nact[kk] += 1
                k = kend
        for k in range(nk):
            r = r4 + k
            na = nact[k]
            if na == 0 and clear:
                _zero_row(out, r - rb, 0, W)
            first = clear
            q1 = na
            while q1 > 0:                       # largest components first; a short group
                q0 = max(0, q1 - 4)             # is the smallest (the least padding work)
                ua = W
                ub = -1
                for q in range(q0, q1):
                    ua = min(ua, JA[act[k, q], k])
                    ub = max(ub, JB[act[k, q], k])
                # a whole number of 8-wide vectors, at least two (the vector loop's minimum):
                # a pixel of the scalar remainder costs ~5 of the vector loop
                npad = max(16, (ub - ua + 8) // 8 * 8)
                if npad >= W:
                    ua = 0
                    ub = W - 1
                else:
                    ub = ua + npad - 1
                    if ub >= W:
                        ub = W - 1
                        ua = W - npad
                for q in range(q0, q1):         # each member is zero outside its fill span
                    c = act[k, q]
                    if ua < VA[c, k]:
                        _zero_span(G, c, k, ua, VA[c, k] - 1)
                        VA[c, k] = ua
                    if ub > VB[c, k]:
                        _zero_span(G, c, k, VB[c, k] + 1, ub)
                        VB[c, k] = ub
                    BX[c] = P00[c] * (ua - mx[c]) + P01[c] * (r - my[c])
                    BY[c] = P01[c] * (ua - mx[c]) + P11[c] * (r - my[c])
                c0 = act[k, q0]
                c1 = act[k, q0 + 1] if q0 + 1 < q1 else C
                c2 = act[k, q0 + 2] if q0 + 2 < q1 else C
                c3 = act[k, q0 + 3] if q0 + 3 < q1 else C
                if first:                       # zero the rest of the row, assign the span
                    _zero_row(out, r - rb, 0, ua)
                    _zero_row(out, r - rb, ub + 1, W)
                ro = r - rb
                _group_pass(out[0, ro], out[1, ro], out[2, ro], out[3, ro], out[4, ro], out[5, ro],
                            G[c0, k], G[c1, k], G[c2, k], G[c3, k], ua, ub - ua + 1, c0, c1, c2,
                            c3, BX, BY, P00, P01, P11, HV, first)
                first = False
                q1 = q0
        if acc is not None:     # pruned at compile time when absent (numba: `is None` on an arg)
            _accumulate_rows(acc, out, r4, nk, r4 - rb)
    if acc is not None:         # rows no component reaches, four at a time (zeroed above, or
        if ring:                # untouched: ``acc`` is only given with ``clear``; in a ring
            for r in range(out.shape[1]):   # they are zeroed here once)
                _zero_row(out, r, 0, W)
        for r in range(0, H, 4):
            nk = 0
            while nk < 4 and r + nk < H and (r + nk < rmin or r + nk > rmax):
                nk += 1
            if nk == 4 or (nk > 0 and r + nk == H):
                _accumulate_rows(acc, out, r, nk, 0 if ring else r)
            else:           # a group that meets the drawn rows: each outside row on its own
                for k in range(4):
                    rr = r + k
                    if rr < H and (rr < rmin or rr > rmax):
                        _accumulate_rows(acc, out, rr, 1, 0 if ring else rr)


def _work_size_py(C, W):
    """Length (float64 items) of the derivative kernel's work buffer for C components and W
    columns: the state tables (19 x (C + 1) floats, 37 x C + 4 integers), two vectors per
    component, four rows of row buffer per component plus a zero one, and one vector of
    recurrence work space, each ``W + 8`` long."""
    return 19 * (C + 1) + 37 * C + 4 + (6 * C + 5) * (W + 8)


def _zero_span_py(G, c, k, j0, j1):
    """Zero the row buffer ``G[c, k, j0:j1 + 1]`` (nothing if ``j1 < j0``)."""
    for i in range(np.uint64(max(0, j1 - j0 + 1))):
        G[c, k, np.uint64(j0) + i] = 0.0


def _refill_span_py(G, c, k, jlo, jhi, FA, FB, VA, VB):
    """Before ``G[c, k]`` is filled on ``[jlo, jhi]``: zero what the previous fill left outside
    it, and make ``[VA, VB]`` (values or zeros) cover the new span."""
    fa = FA[c, k]
    fb = FB[c, k]
    if fa == jlo and fb == jhi:         # same span as the last fill (within a block: the rule)
        return                          # and [FA, FB] lies inside [VA, VB]: nothing to do
    # the zeroing is written out, not a call to _zero_span: this function runs for every
    # component and row and must stay inlined (compiled forceinline), which a call inside it
    # prevented (benchmarks/NOTES.md, "Renderer kernels")
    if fa < jlo:
        for i in range(np.uint64(min(fb, jlo - 1) - fa + 1)):
            G[c, k, np.uint64(fa) + i] = 0.0
    if fb > jhi:
        j0 = max(fa, jhi + 1)
        for i in range(np.uint64(fb - j0 + 1)):
            G[c, k, np.uint64(j0) + i] = 0.0
    FA[c, k] = jlo
    FB[c, k] = jhi
    if jhi + 1 < VA[c, k] or jlo > VB[c, k] + 1:
        VA[c, k] = jlo                  # disjoint: start a new interval
        VB[c, k] = jhi
    else:
        VA[c, k] = min(VA[c, k], jlo)
        VB[c, k] = max(VB[c, k], jhi)


def _zero_row_py(out, r, j0, j1):
    """Zero ``out[:, r, j0:j1]``."""
    for p in range(out.shape[0]):
        for i in range(np.uint64(max(0, j1 - j0))):
            out[p, r, np.uint64(j0) + i] = 0.0


_work_size = numba.njit(cache=True, nogil=True)(_work_size_py)
_zero_row = numba.njit(cache=True, nogil=True)(_zero_row_py)
_zero_span = numba.njit(cache=True, nogil=True)(_zero_span_py)
_refill_span = numba.njit(cache=True, nogil=True, forceinline=True)(_refill_span_py)
# forceinline: LLVM inlines the pass into the kernel with its own flags (contraction kept,
# results bit for bit the same); as a call it passed ~75 words of array structs on the stack
# for every pass. noalias (the planes' and buffers' rows are passed one by one) removes the
# run-time overlap checks LLVM puts before each vectorised pass. Both measured in
# benchmarks/NOTES.md, "Renderer kernels".
_group_pass = _njit_noalias(cache=True, nogil=True, fastmath={"contract"},
                            forceinline=True)(_group_pass_py)
_fill_four = _njit_noalias(cache=True, nogil=True, forceinline=True)(_fill_four_py)
_fill_one = _njit_noalias(cache=True, nogil=True, forceinline=True)(_fill_one_py)
_derivs_kernel = numba.njit(cache=True, nogil=True)(_derivs_kernel_py)


#: Where the kernels' work arrays start relative to the image, in bytes mod 4096 (image kernel,
#: derivative kernel); see :func:`_placed_py`.
PLACE_IMAGE = 1536
PLACE_DERIVS = 512


def _placed_py(out, scratch, derivs):
    """The part of ``scratch`` (:class:`_Scratch`) that starts ``PLACE_IMAGE`` or
    ``PLACE_DERIVS`` bytes (mod 4096) after ``out``.

    A load whose address matches a pending store's in its low 12 bits waits for it (4K
    aliasing), and arrays whose addresses agree there share L1 sets, so where the allocator
    puts the work arrays relative to ``out`` changes the time of a render; these two offsets
    were the best of a scan (benchmarks/NOTES.md, "Renderer kernels").
    """
    rel = PLACE_DERIVS if derivs else PLACE_IMAGE
    o = (np.int64(out.ctypes.data % 4096) + rel - np.int64(scratch.ctypes.data % 4096)) % 4096
    return scratch[o // 8:]


_placed = numba.njit(cache=True, nogil=True)(_placed_py)


def _mixture_kernel_py(amp, mx, my, cxx, cxy, cyy, vfac, out, derivs, scratch):
    """Add every component of a mixture (arrays of length K) to ``out`` (and, with
    ``derivs``, to its derivative planes, weighted by ``vfac``). ``scratch`` is a flat work
    buffer (:class:`_Scratch`)."""
    scratch = _placed(out, scratch, derivs)
    if derivs:
        _derivs_kernel(amp, mx, my, cxx, cxy, cyy, vfac, out, False, scratch)
        return
    W = out.shape[2]
    for k in range(amp.shape[0]):
        _add_component(amp[k], mx[k], my[k], cxx[k], cxy[k], cyy[k], out, scratch[:W],
                       scratch[W:2 * W], scratch[2 * W:3 * W])


def _galaxy_kernel_py(flux, x, y, sxx, sxy, syy, prof, psf, out, derivs, scratch, clear):
    """Add a galaxy: profile ``prof`` (3, M) -- amplitudes, variances in r_e^2, and the weights
    of the shape-derivative planes (the variances for d/dS; ``dv/dn`` for a Sérsic index) --
    stretched by the shape matrix ``S`` and convolved with the PSF ``psf`` (6, K): amplitudes,
    mean x, mean y, Cxx, Cxy, Cyy. M x K components. ``scratch`` (flat) holds the kernels'
    vectors; ``clear`` zeroes ``out`` first. Few arguments keep the call cheap (numba types
    each argument on every call)."""
    if clear and not derivs:
        out.fill(0.0)
    scratch = _placed(out, scratch, derivs)
    if derivs:
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
                amp[c] = flux * prof[0, m] * psf[0, k]
                mx[c] = x + psf[1, k]
                my[c] = y + psf[2, k]
                cxx[c] = vm * sxx + psf[3, k]
                cxy[c] = vm * sxy + psf[4, k]
                cyy[c] = vm * syy + psf[5, k]
                vf[c] = prof[2, m]
        _derivs_kernel(amp, mx, my, cxx, cxy, cyy, vf, out, clear, scratch[7 * C:])
        return
    W = out.shape[2]
    col = scratch[:W]
    cstep = scratch[W:2 * W]
    h = scratch[2 * W:3 * W]
    for m in range(prof.shape[1]):
        vm = prof[1, m]
        for k in range(psf.shape[1]):
            _add_component(flux * prof[0, m] * psf[0, k], x + psf[1, k], y + psf[2, k],
                           vm * sxx + psf[3, k], vm * sxy + psf[4, k], vm * syy + psf[5, k],
                           out, col, cstep, h)


_add_component = numba.njit(cache=True, nogil=True)(_add_component_py)
_mixture_kernel = numba.njit(cache=True, nogil=True)(_mixture_kernel_py)
_galaxy_kernel = numba.njit(cache=True, nogil=True)(_galaxy_kernel_py)



class _Scratch(threading.local):
    """Per-thread flat work buffer of the kernels, reused from call to call: the image
    kernel's three vectors (column x cross, cross step, recurrence work space) or the
    derivative kernel's component arrays and work (:func:`_work_size_py`), with 4096 bytes
    to spare for placing them (:func:`_placed_py`)."""

    buf = None

    def full(self, W, C=0):
        """The buffer, long enough for ``W`` columns and, for ``C`` components with
        derivatives, their arrays and work."""
        need = max(3 * W, 7 * C + _work_size_py(C, W) if C else 0) + 512
        buf = self.buf
        if buf is None or buf.shape[0] < need:
            buf = self.buf = np.empty(max(need, 3 * 64))
        return buf


_scratch = _Scratch()


_DELTA = (np.ones(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1))
_DELTA_PACKED = np.vstack(_DELTA)
