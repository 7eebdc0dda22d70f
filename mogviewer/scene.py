"""A scene: every source in a cutout (point sources and galaxies) and the sky, as values.

A :class:`Scene` is what a model of the sky says, independent of any image; it is rendered into
an :class:`~mogviewer.observation.Observation`, which supplies the pixel grid and the PSF. The
one-galaxy fit (:mod:`mogviewer.fitting`) is the special case of a scene with one
:class:`Galaxy`: :meth:`Scene.from_params` builds it from a fit's :class:`GalaxyParams`, and its
render equals :func:`mogviewer.fitting.model_image` (tested).

Conventions
-----------
* Positions ``x, y``: 0-based pixel coordinates of the observation the scene is rendered into
  (pixel centres at integers).
* ``flux``: total flux of the source's *mixture* in image units (for a galaxy, the target
  profile's total is ``flux / flux_fraction``: :attr:`Galaxy.flux_target`), like
  :class:`~mogviewer.fitting.GalaxyParams`.
* Galaxy shape: ``re`` the semi-major half-light radius of the target profile (pixels),
  ``q = b/a`` in (0, 1], ``angle`` degrees counter-clockwise from +x.
* Sky: ``sky + sky_dx (x - xc) + sky_dy (y - yc)`` per pixel, ``(xc, yc)`` the image centre.

Sources are immutable, comparable and picklable values; :meth:`Scene.replace_source` returns a
new scene.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np

from .ellipse import shape_matrix
from .profiles import get_mixture
from .render import render_galaxy

__all__ = ["PointSource", "Galaxy", "Scene", "Source"]


@dataclasses.dataclass(frozen=True)
class PointSource:
    """A star or unresolved source: the PSF itself, scaled and placed.

    Attributes
    ----------
    flux : float
        Total flux, image units.
    x, y : float
        Centre, 0-based pixels.
    """

    flux: float
    x: float
    y: float

    kind = "point"

    def render_into(self, observation, out=None):
        """Add this source to ``out`` (or a new image) on the observation's grid: the PSF
        scaled and placed, or with no PSF the pixel itself (the renderer integrates over it)."""
        img = np.zeros(observation.shape) if out is None else out
        img += render_galaxy(self.flux, self.x, self.y, np.zeros(3), POINT_PROFILE, None,
                             observation.psf, observation.shape)
        return img


class _PointProfile:
    """A 'profile' of one component of unit amplitude and zero variance: with S = 0 the galaxy
    renderer draws the PSF (or, with none, the pixel), with its x, y derivatives."""

    amps = np.ones(1)
    variances = np.zeros(1)
    amps.setflags(write=False)
    variances.setflags(write=False)


#: The profile of a point source (see :class:`_PointProfile`).
POINT_PROFILE = _PointProfile


@dataclasses.dataclass(frozen=True)
class Galaxy:
    """A galaxy: one profile (or a bulge + disk sharing the centre) stretched by its ellipse.

    Attributes
    ----------
    profile : str
        ``'exp'``, ``'dev'``, ``'lux'``, ``'luv'`` or ``'ser'``.
    M : int or None
        Mixture size (None: the profile's default; the Sérsic family is always 10).
    flux, x, y, re, q, angle : float
        See the module's conventions.
    n : float or None
        Sérsic index (``'ser'`` only).
    profile2, M2, flux2, re2, q2, angle2 :
        An optional second component (bulge + disk), same centre.
    """

    profile: str
    flux: float
    x: float
    y: float
    re: float
    q: float
    angle: float
    M: int | None = None
    n: float | None = None
    profile2: str | None = None
    M2: int | None = None
    flux2: float = 0.0
    re2: float = 1.0
    q2: float = 1.0
    angle2: float = 0.0

    kind = "galaxy"

    _DEFAULT_M = {"exp": 6, "dev": 8, "lux": 6, "luv": 8, "ser": None}

    def __post_init__(self):
        if not 0.0 < self.q <= 1.0 or (self.profile2 is not None and not 0.0 < self.q2 <= 1.0):
            raise ValueError(f"axis ratios must be in (0, 1], got q = {self.q}, q2 = {self.q2}")
        if self.re <= 0 or (self.profile2 is not None and self.re2 <= 0):
            raise ValueError(f"radii must be positive, got re = {self.re}, re2 = {self.re2}")
        self.mixture()          # an unknown profile, M or n fails here, with its message
        if self.profile2 is not None:
            self.mixture("2")

    def mixture(self, component=""):
        """The :class:`~mogviewer.profiles.ProfileMixture` of the first or second (``"2"``)
        component."""
        if component == "2":
            return get_mixture(self.profile2, self.M2 or self._DEFAULT_M[self.profile2])
        M = self.M if self.M is not None else self._DEFAULT_M[self.profile]
        return get_mixture(self.profile, M, n=self.n)

    @property
    def flux_target(self):
        """The target profile's total flux (first component): ``flux / flux_fraction``."""
        return self.flux / self.mixture().flux_fraction

    def render_into(self, observation, out=None):
        """Add this galaxy (convolved with the observation's PSF) to ``out`` or a new image."""
        img = np.zeros(observation.shape) if out is None else out
        img += render_galaxy(self.flux, self.x, self.y, shape_matrix(self.re, self.q, self.angle),
                             self.mixture(), None, observation.psf, observation.shape)
        if self.profile2 is not None:
            img += render_galaxy(self.flux2, self.x, self.y,
                                 shape_matrix(self.re2, self.q2, self.angle2), self.mixture("2"),
                                 None, observation.psf, observation.shape)
        return img


Source = Union[PointSource, Galaxy]


@dataclasses.dataclass(frozen=True)
class Scene:
    """Sources and a sky: everything a model says about a patch of sky.

    Attributes
    ----------
    sources : tuple of PointSource or Galaxy
        In catalogue order; ``target`` indexes the source of interest.
    sky, sky_dx, sky_dy : float
        Sky per pixel and its gradient per pixel (see the module's conventions).
    target : int
        Index of the target source in :attr:`sources`.
    """

    sources: tuple = ()
    sky: float = 0.0
    sky_dx: float = 0.0
    sky_dy: float = 0.0
    target: int = 0

    def __post_init__(self):
        object.__setattr__(self, "sources", tuple(self.sources))
        for s in self.sources:
            if not isinstance(s, (PointSource, Galaxy)):
                raise TypeError(f"a scene holds PointSource and Galaxy values, got "
                                f"{type(s).__name__}")
        if self.sources and not 0 <= self.target < len(self.sources):
            raise ValueError(f"target {self.target} is not a source index (0..."
                             f"{len(self.sources) - 1})")

    @classmethod
    def from_params(cls, params, profile, M=None, *, profile2=None, M2=None):
        """The scene of a one-galaxy fit from its :class:`~mogviewer.fitting.GalaxyParams`."""
        p = params
        gal = Galaxy(profile=profile, M=None if profile == "ser" else M, flux=p.flux, x=p.x,
                     y=p.y, re=p.re, q=p.q, angle=p.angle,
                     n=p.n if profile == "ser" else None, profile2=profile2, M2=M2,
                     flux2=p.flux2 if profile2 else 0.0, re2=p.re2 if profile2 else 1.0,
                     q2=p.q2 if profile2 else 1.0, angle2=p.angle2 if profile2 else 0.0)
        return cls((gal,), sky=p.sky, sky_dx=p.sky_dx, sky_dy=p.sky_dy)

    def __len__(self):
        return len(self.sources)

    def replace_source(self, index, source):
        """A new scene with source ``index`` replaced."""
        sources = list(self.sources)
        sources[index] = source
        return dataclasses.replace(self, sources=tuple(sources))

    def add(self, source):
        """A new scene with ``source`` appended."""
        return dataclasses.replace(self, sources=self.sources + (source,))

    def sky_image(self, shape):
        """The sky on a grid of ``shape``: constant plus the plane about the image centre."""
        ny, nx = shape
        if self.sky_dx == 0.0 and self.sky_dy == 0.0:
            return np.full(shape, float(self.sky))
        yy, xx = np.mgrid[:ny, :nx]
        return self.sky + self.sky_dx * (xx - (nx - 1) / 2) + self.sky_dy * (yy - (ny - 1) / 2)

    def render(self, observation, *, sources=None):
        """The model image of the scene (or of the sources with the given indices, without sky
        then) in ``observation``: every source convolved with its PSF, plus the sky."""
        if sources is None:
            img = self.sky_image(observation.shape)
            chosen = self.sources
        else:
            img = np.zeros(observation.shape)
            chosen = [self.sources[i] for i in sources]
        for s in chosen:
            s.render_into(observation, img)
        return img
