"""Brute-force reference for galaxies convolved with a PSF *stamp* (issue 14).

Shares no code with the exact-PSF mode (:mod:`mogviewer.render.exact`): the galaxy is rendered
at ``s`` = 10 times the pixel resolution, integrated over each fine cell (the renderer's no-PSF
path on the fine grid, which integrates over its pixel, here the fine cell: tested for flux
conservation in ``test_exact_psf.py``), reduced to its band-limited samples at the pixel
centres (the fine grid's spectrum cut at the coarse Nyquist frequency), and convolved with the
stamp read as band-limited samples of the pixel-convolved PSF (its origin at a sub-pixel
position applied as a phase). The fine cell's own blur is divided out of the spectrum (its
transform is known), so the reference is the galaxy itself convolved with the stamp. No
mixture of the PSF enters, and no analytic transform of the galaxy.
"""

import numpy as np

from mogviewer.ellipse import shape_matrix
from mogviewer.render import render_galaxy


def brute_image(params, profile, M, stamp, centre, shape, *, n=None, s=10, pad=None):
    """Image of ``params`` (flux, x, y, re, q, angle) convolved with ``stamp`` (unit sum),
    whose PSF origin is ``centre = (cx, cy)`` in stamp pixels."""
    H, W = shape
    h, w = stamp.shape
    if pad is None:
        pad = max(h, w) // 2 + 16 + int(4 * params["re"] * (3.0 if profile != "exp" else 1.7))
    Ny, Nx = H + 2 * pad, W + 2 * pad
    Ny += 1 - Ny % 2          # odd: no Nyquist bin
    Nx += 1 - Nx % 2
    S = shape_matrix(params["re"], params["q"], params["angle"]) * s * s
    fx = (params["x"] + pad + 0.5) * s - 0.5
    fy = (params["y"] + pad + 0.5) * s - 0.5
    fine = render_galaxy(params["flux"], fx, fy, S, profile, M, None, (Ny * s, Nx * s), n=n)
    F = np.fft.fft2(fine)
    ky = 2 * np.pi * np.fft.fftfreq(Ny)
    kx = 2 * np.pi * np.fft.fftfreq(Nx)
    iy = np.round(np.fft.fftfreq(Ny) * Ny).astype(int) % (Ny * s)
    ix = np.round(np.fft.fftfreq(Nx) * Nx).astype(int) % (Nx * s)
    G = F[np.ix_(iy, ix)]
    off = 0.5 / s - 0.5       # fine cell f sits at (f + 0.5)/s - 0.5 coarse units
    G = G * np.exp(-1j * ky * off)[:, None] * np.exp(-1j * kx * off)[None, :]
    # undo the fine cell (the renderer's pixel, variance PIXEL_VAR in fine units): the galaxy
    # itself, not the galaxy integrated over 0.1 px cells, is convolved with the stamp (which
    # already holds the pixel)
    from mogviewer.render.exact import PIXEL_VAR
    G = G / np.exp(-0.5 * PIXEL_VAR / (s * s) * (ky[:, None] ** 2 + kx[None, :] ** 2))
    # the stamp as a band-limited PSF with its origin at `centre`
    Z = np.zeros((Ny, Nx))
    i0, j0 = int(round(centre[1])), int(round(centre[0]))
    rows = (np.arange(h) - i0) % Ny
    cols = (np.arange(w) - j0) % Nx
    Z[np.ix_(rows, cols)] = np.nan_to_num(stamp)
    T = np.fft.fft2(Z) * np.exp(-1j * ky * (i0 - centre[1]))[:, None] \
        * np.exp(-1j * kx * (j0 - centre[0]))[None, :]
    img = np.fft.ifft2(G * T).real
    return img[pad:pad + H, pad:pad + W]
