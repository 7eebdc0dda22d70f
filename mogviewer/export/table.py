"""Rows of the result table (one per fit, or a flagged row per failure) and the CSV that holds them.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ExportError
from ..profiles.sersic import N_MAX, N_MIN, sersic_profile_mixture
from .columns import _NAN, COLUMN_NAMES, COLUMNS, CONVENTIONS, band_columns
from .conventions import flag_names, local_jacobian, pa_east_of_north, pa_galfit
from .files import _atomic_write, append_locked, check_output_path

# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------

#: The ``_err`` columns, in row order (every row starts with exactly COLUMN_NAMES).
_ERR_COLUMNS = tuple(k for k in COLUMN_NAMES if k.endswith("_err"))


def _empty_row():
    return dict.fromkeys(COLUMN_NAMES)


def failed_row(reason, *, file=None, hdu=None, band=None, profile=None, M=None, n=None,
               sky_model=None, psf_source=None, status="failed", warnings_text=""):
    """A row with every column, ``status='failed'`` and the ``reason``; numbers empty."""
    row = _empty_row()
    row.update(file=file, hdu=hdu, band=band, profile=profile, M=M, n=n, sky_model=sky_model,
               psf_source=psf_source, status=status, reason=str(reason), flags=0,
               flag_names="", warnings=warnings_text, mogviewer_version=__version__)
    return row


class _Propagator:
    """``sqrt(g^T C g) * scale`` over a result's free parameters (derivatives by name; NaN if
    undefined), with the covariance and the names' positions looked up once per row. The
    product is taken on the same sub-matrix and vector as before (the non-zero derivatives
    only), so every error is the same to the last bit."""

    def __init__(self, result, scale):
        self.index = {name: i for i, name in enumerate(result.free)}
        self.n = len(self.index)
        self.cov = np.asarray(result.covariance, float)
        self.scale = scale

    def __call__(self, grads):
        pairs = sorted((self.index[k], v) for k, v in grads.items()
                       if k in self.index and v != 0)
        if not pairs:
            return 0.0
        idx = [i for i, _ in pairs]
        g = np.array([v for _, v in pairs], float)
        C = self.cov[np.ix_(idx, idx)]
        var = float(g @ C @ g)
        if not math.isfinite(var) or var < 0:
            return _NAN
        return math.sqrt(var) * self.scale


def _propagate(result, grads, scale):
    """``sqrt(g^T C g)`` over the free parameters (derivatives by name); NaN if undefined."""
    return _Propagator(result, scale)(grads)


def _dlnf_dn(result, h=1e-3):
    """d ln(flux_fraction) / dn of a Sérsic-family fit (0 for the tables)."""
    if result.profile != "ser":
        return 0.0
    n = result.params.n
    lo, hi = max(N_MIN, n - h), min(N_MAX, n + h)
    if hi <= lo:
        return 0.0
    flo = sersic_profile_mixture(lo).flux_fraction
    fhi = sersic_profile_mixture(hi).flux_fraction
    return (math.log(fhi) - math.log(flo)) / (hi - lo)


def result_to_row(result, image_data=None, *, problem=None, zeropoint=None, psf_source="none",
                  file=None, hdu=None, band=None, scale_errors=False, reason="",
                  warnings_text="", posterior=None):
    """One CSV row (a dict with every column of :data:`COLUMNS`) for a :class:`FitResult`.

    Parameters
    ----------
    result : mogviewer.fitting.FitResult
    image_data : mogviewer.io.ImageData, optional
        Source of the WCS (RA/Dec, ``pa_eofn_deg``, ``re_arcsec``), pixel scale, zeropoint,
        file, HDU, band and noise description.
    problem : mogviewer.fitting.FitProblem, optional
        Source of the sky model (``sky_model``); without it, guessed from ``result.free``.
    zeropoint : float, optional
        Magnitude zeropoint (mag of 1 image unit); overrides ``image_data.zeropoint``. Without
        any, the magnitudes are NaN.
    psf_source : str
        Description of the PSF used (``'none'`` without PSF).
    file, hdu, band : optional
        Override what ``image_data`` says.
    scale_errors : bool
        Scale every error by ``sqrt(chi2_nu)`` (as GALFIT does); recorded in ``err_scaled``.
    reason, warnings_text : str
        Text for the ``reason`` and ``warnings`` columns.

    Returns
    -------
    dict
        ``{column name: value}`` in :data:`COLUMN_NAMES` order; ``None`` = not applicable (no
        WCS, no zeropoint), NaN = undefined (e.g. a singular covariance).
    """
    p = result.params
    err = result.errors(scaled=False)
    scale = math.sqrt(result.chi2_nu) if scale_errors else 1.0
    if scale_errors and not math.isfinite(scale):
        scale = _NAN
    err = {k: v * scale for k, v in err.items()}
    d = image_data
    row = _empty_row()

    propagate = _Propagator(result, scale)

    def prop(**grads):
        return propagate(grads)

    if problem is not None and getattr(problem, "psf_info", None):
        row.update({k: v for k, v in problem.psf_info.items() if k in row})
    if problem is not None:
        sky_model = problem.sky
    else:
        sky_model = ("plane" if "sky_dx" in result.free else
                     "constant" if "sky" in result.free else "none")
    if zeropoint is None and d is not None:
        zeropoint = d.zeropoint
    row.update(
        file=file if file is not None else (d.path if d is not None else None),
        hdu=hdu if hdu is not None else (d.hdu if d is not None else None),
        band=band if band is not None else (d.band if d is not None else None),
        status=result.status, flags=int(result.flags), flag_names=flag_names(result.flags),
        reason=reason, profile=result.profile, M=int(result.M),
        n=result.n, sky_model=sky_model, psf_source=psf_source,
        x=p.x, x_err=err["x"], y=p.y, y_err=err["y"],
        x_fits=p.x + 1.0, x_fits_err=err["x"], y_fits=p.y + 1.0, y_fits_err=err["y"],
        re_pix=p.re, re_pix_err=err["re"], q=p.q, q_err=err["q"],
        pa_img_deg=p.angle, pa_img_deg_err=err["angle"],
        pa_galfit_deg=pa_galfit(p.angle), pa_galfit_deg_err=err["angle"],
        flux_mog=p.flux, flux_mog_err=err["flux"],
        flux=result.flux_target, flux_err=err["flux"] / result.flux_fraction,
        err_scaled=bool(scale_errors), chi2=result.chi2, nu=int(result.nu),
        chi2_nu=result.chi2_nu, nfev=int(result.nfev), free="|".join(result.free),
        elapsed_s=result.elapsed, warnings=warnings_text, mogviewer_version=__version__,
        zeropoint=zeropoint,
    )
    sq = math.sqrt(p.q)
    row["re_circ_pix"] = result.re_circ
    row["re_circ_pix_err"] = prop(re=sq, q=p.re / (2 * sq))
    row["ell"], row["ell_err"] = result.ell, err["q"]
    e = (1 - p.q) / (1 + p.q)
    de_dq = -2.0 / (1 + p.q) ** 2
    t2 = 2 * math.radians(p.angle)
    row["e1"], row["e2"] = result.e1e2
    row["e1_err"] = prop(q=de_dq * math.cos(t2), angle=-2 * e * math.sin(t2) * math.pi / 180)
    row["e2_err"] = prop(q=de_dq * math.sin(t2), angle=2 * e * math.cos(t2) * math.pi / 180)
    if result.profile == "ser":
        row["n_err"] = err.get("n", 0.0)
    if getattr(result, "profile2", None):
        row.update(profile2=result.profile2, M2=result.M2, flux2=p.flux2,
                   flux2_err=err["flux2"], re2_pix=p.re2, re2_pix_err=err["re2"], q2=p.q2,
                   q2_err=err["q2"], pa2_img_deg=p.angle2, pa2_img_deg_err=err["angle2"])
        tot = p.flux + p.flux2
        row["bt"] = p.flux / tot if tot != 0 else _NAN
    if sky_model != "none":
        row["sky"], row["sky_err"] = p.sky, err["sky"]
    if sky_model == "plane":
        row.update(sky_dx=p.sky_dx, sky_dx_err=err["sky_dx"], sky_dy=p.sky_dy,
                   sky_dy_err=err["sky_dy"])
    # flux (the target's) = flux_mog / f(n): with a free Sérsic index the flux fraction f
    # varies too
    dlnf_dn = _dlnf_dn(result) if "n" in result.free else 0.0
    if dlnf_dn:
        f = result.flux_fraction
        row["flux_err"] = prop(flux=1.0 / f, n=-p.flux * dlnf_dn / f)
    if zeropoint is not None:
        zp = float(zeropoint)
        k = 2.5 / math.log(10)
        dmag = prop(flux=-k / p.flux) if p.flux > 0 else _NAN
        row["mag_mog"], row["mag_mog_err"] = result.magnitude(zp), dmag
        ft = result.flux_target
        row["mag"] = zp - 2.5 * math.log10(ft) if ft > 0 else _NAN
        row["mag_err"] = (prop(flux=-k / p.flux, n=k * dlnf_dn) if p.flux > 0 and dlnf_dn
                          else dmag)
    wcs = getattr(d, "wcs", None) if d is not None else None
    pixscale = getattr(d, "pixel_scale_arcsec", None) if d is not None else None
    row["pixel_scale_arcsec"] = pixscale
    if d is not None:
        row["noise_source"] = d.noise_source
        row["noise_estimated"] = bool(d.noise_is_estimate)
    if wcs is not None:
        J, lon, lat = local_jacobian(wcs, p.x, p.y)
        coslat = math.cos(math.radians(lat))
        row["ra_deg"], row["dec_deg"] = lon, lat
        row["ra_deg_err"] = prop(x=J[0, 0] / coslat, y=J[0, 1] / coslat) if coslat > 0 else _NAN
        row["dec_deg_err"] = prop(x=J[1, 0], y=J[1, 1])
        pa, dpa = pa_east_of_north(J, p.angle)
        row["pa_eofn_deg"], row["pa_eofn_deg_err"] = pa, abs(dpa) * err["angle"]
        t = math.radians(p.angle)
        s_major = float(np.hypot(*(J @ np.array([math.cos(t), math.sin(t)])))) * 3600.0
        row["re_arcsec"], row["re_arcsec_err"] = p.re * s_major, err["re"] * s_major
    elif pixscale is not None:
        row["re_arcsec"], row["re_arcsec_err"] = p.re * pixscale, err["re"] * pixscale
    # every error also scaled by sqrt(chi2/nu), in its own column (issue 20)
    to_scaled = math.sqrt(result.chi2_nu) / scale if result.chi2_nu >= 0 else _NAN
    names = (_ERR_COLUMNS if len(row) == len(COLUMN_NAMES) else
             [k for k in row if k.endswith("_err")])
    for name in names:
        if row[name] is not None:
            row[name + "_scaled"] = row[name] * to_scaled
    if posterior is not None:
        _posterior_columns(row, posterior)
    return row



# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------

def _fmt(v):
    # the common exact types first (a row has ~160 values; the parent process formats every
    # row of a batch): the same text as the general rules below
    t = type(v)
    if t is float:
        return repr(v)
    if v is None:
        return ""
    if t is str:
        return v
    if t is int:
        return str(v)
    return _fmt_other(v)


#: Types the csv module writes exactly as :func:`_fmt` does (a float by its repr, an int or a
#: bool by str, None as an empty field, a str as it is): passed through unformatted.
_AS_IS = frozenset((float, int, bool, str, type(None)))


def _csv_fields(row, columns):
    """The values of ``row`` for ``columns``, ready for ``csv.writer`` (same text as
    ``[_fmt(row.get(c)) for c in columns]``)."""
    as_is = _AS_IS
    return [v if type(v) in as_is else _fmt(v) for v in map(row.get, columns)]


def _fmt_other(v):
    if isinstance(v, bool | np.bool_):
        return "True" if v else "False"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return str(v)


def columns_doc_path(path):
    """The sidecar file documenting a CSV's columns: ``fits.csv -> fits.csv.columns.txt``."""
    path = Path(path)
    return path.with_name(path.name + ".columns.txt")


def columns_doc(columns=COLUMN_NAMES):
    """Text documenting every column (name, unit, description) and the conventions."""
    lines = [f"Columns of a mogviewer {__version__} fit-results CSV (one row per fit).",
             "Read it with astropy.table.Table.read(path, format='csv') or pandas.read_csv.",
             "Units are also in the column names (re_pix, pa_img_deg, ...); '_err' columns hold",
             "the 1-sigma error of the column before them.", "", "Conventions:"]
    lines += [f"  {k}: {v}" for k, v in CONVENTIONS.items()]
    lines += ["", f"{'column':<22} {'unit':<16} description"]
    known = {c.name: c for c in COLUMNS}
    bands = [n[len("flux_"):] for n in columns if n.startswith("flux_") and n != "flux_mog"
             and not n.endswith("_err") and n not in known]
    known.update({c.name: c for c in band_columns(bands)})
    for name in columns:
        c = known.get(name)
        if c is not None:
            lines.append(f"{c.name:<22} {c.unit or '-':<16} {c.description}")
    return "\n".join(lines) + "\n"


def read_csv_columns(path):
    """Column names of an existing CSV (first line that is not a ``#`` comment, so files of
    earlier versions, which began with comment lines, are read too); None if empty."""
    with open(path, newline="", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            return tuple(next(csv.reader([line])))
    return None


def write_csv(path, rows, *, append=False, columns=COLUMN_NAMES, inputs=()):
    """Write ``rows`` (dicts) as CSV, atomically.

    A plain CSV that ``astropy.table.Table.read(path, format="csv")`` reads as it is: the
    header row (units in the column names), then one line per row. Floats are written with full
    precision (``repr``), ``None`` as an empty field and NaN as ``nan``. Every column's unit and
    description and the conventions go to a sidecar text file beside it
    (:func:`columns_doc_path`), written when the CSV is created.

    Parameters
    ----------
    path : str or Path
    rows : iterable of dict
        Keys must be within ``columns``; missing keys are written empty.
    append : bool
        Add ``rows`` to an existing file without repeating its header (an absent or empty file is
        created). The existing file's columns must equal ``columns``, else :class:`ExportError`.
        The rows are appended in place under an exclusive lock (two runs appending at once lose
        no rows); a failure cuts the file back to its previous length.
    columns : sequence of str
        Column order (default :data:`COLUMN_NAMES`).
    inputs : sequence of paths
        Files that must not be overwritten (the run's inputs; see
        :func:`mogviewer.export.files.check_output_path`).

    Raises
    ------
    ExportError
        Unwritable path, target is a directory, or append to a file with other columns.
    """
    path = check_output_path(path, "CSV", inputs=inputs)
    rows = list(rows)
    columns = tuple(columns)
    known = frozenset(columns)
    for r in rows:
        extra = r.keys() - known
        if extra:
            raise ValueError(f"row has unknown columns: {', '.join(sorted(extra))}")
    # format every row first: a row that cannot be formatted leaves the file untouched
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow(_csv_fields(r, columns))
    body = buf.getvalue()
    header = rows_to_text([], columns)
    created = []

    def append_text(head, size):
        have = None
        for line in head.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            have = tuple(next(csv.reader([line])))
            break
        if have is None:
            if head.strip():
                raise ExportError(f"cannot append to {path}: it holds no CSV header row")
            created.append(True)
            return header + body
        if have != columns:
            missing = [c for c in columns if c not in have]
            extra = [c for c in have if c not in columns]
            detail = []
            if missing:
                detail.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5
                                                                     else ""))
            if extra:
                detail.append(f"unexpected {', '.join(extra[:5])}" + (" ..." if len(extra) > 5
                                                                      else ""))
            if not detail:
                detail.append("same names in another order")
            raise ExportError(f"cannot append to {path}: its columns differ from this version's "
                              f"({'; '.join(detail)}); write to a new file instead")
        return body

    if append:
        out = append_locked(path, append_text, what="CSV", inputs=inputs)
    else:
        out = _atomic_write(path, lambda f: f.write(header + body), what="CSV", inputs=inputs)
        created.append(True)
    if created:
        doc = columns_doc(columns)
        try:
            _atomic_write(columns_doc_path(out), lambda f: f.write(doc), what="CSV column notes",
                          inputs=inputs)
        except ExportError:
            pass  # the CSV itself is complete; its notes are a convenience (and may be named
            # too long: a 250-byte CSV name plus ".columns.txt" exceeds NAME_MAX)
    return out


def rows_to_text(rows, columns=COLUMN_NAMES):
    """The CSV text :func:`write_csv` would write for ``rows`` (for previews and tests)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(_csv_fields(r, columns))
    return buf.getvalue()


#: CSV column -> the posterior's sampled or derived quantity (``flux`` and ``mag`` are the
#: target profile's, as the CSV's own columns are).
_POSTERIOR_NAMES = {"flux": "flux_target", "mag": "mag", "re_pix": "re", "re_circ_pix": "re_circ",
                    "q": "q", "pa_img_deg": "angle", "n": "n", "e1": "e1", "e2": "e2",
                    "sky": "sky"}


def _posterior_columns(row, post):
    """The ``--sample`` columns of a row from a :class:`mogviewer.sampling.Posterior`."""
    for col, name in _POSTERIOR_NAMES.items():
        if name in post.percentiles:
            lo, mid, hi = post.percentiles[name]
            if name == "angle":       # sampled unwrapped about the best fit: report in [0, 180)
                lo, mid, hi = (v % 180.0 for v in (lo, mid, hi))
            row[f"{col}_p16"], row[f"{col}_p50"], row[f"{col}_p84"] = lo, mid, hi
    taus = [t for t in post.tau.values() if math.isfinite(t)]
    ess = [e for e in post.ess.values() if math.isfinite(e)]
    row["sample_tau_max"] = max(taus) if taus else _NAN
    row["sample_ess_min"] = min(ess) if ess else _NAN
    row["sample_acceptance"] = post.acceptance
    row["sample_converged"] = bool(post.converged)
    row["sample_steps"] = int(post.n_steps)
    row["sample_prior"] = post.prior_text()
