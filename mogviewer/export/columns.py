"""The columns of a result table: names, units, descriptions, and the conventions they follow.
"""

from __future__ import annotations

import dataclasses

#: One sentence per convention; written into the CSV comment lines and the JSON model file.
CONVENTIONS = {
    "array_order": "arrays are image[y, x]",
    "pixel_origin": "x, y are 0-based pixel centres; x_fits = x + 1, y_fits = y + 1 (FITS, "
                    "GALFIT, imfit, DS9)",
    "pa_img_deg": "major axis, degrees counter-clockwise from +x, in [0, 180)",
    "pa_galfit_deg": "GALFIT/imfit PA, counter-clockwise from +y = pa_img_deg - 90 wrapped to "
                     "(-90, 90]",
    "pa_eofn_deg": "position angle east of north from the local WCS Jacobian, in [0, 180)",
    "q": "axis ratio b/a <= 1; ell = 1 - q",
    "re": "semi-major half-light radius of the target profile",
    "errors": "formal 1-sigma errors from (J^T W J)^-1, scaled by sqrt(chi2_nu) iff "
              "err_scaled; derived quantities by linear propagation; <name>_err_scaled is "
              "always the formal error times sqrt(chi2_nu)",
}

_NAN = float("nan")

# (name, unit, description); value columns with an error are followed by "<name>_err" and
# "<name>_err_scaled".
#: Quantities whose posterior percentiles --sample adds (CSV name, unit).
_SAMPLED = (("flux", "image units"), ("mag", "mag"), ("re_pix", "pix"), ("re_circ_pix", "pix"),
            ("q", ""), ("pa_img_deg", "deg"), ("n", ""), ("e1", ""), ("e2", ""),
            ("sky", "image units/pix"))

_C = [
    ("object_id", "", "the object's id: a manifest's or catalogue's id column, else the file "
                      "as given (with [hdu=N], [band=B], [plane=N]); --resume skips the ids "
                      "already in the CSV"),
    ("file", "", "input image file"),
    ("hdu", "", "HDU index of the image (empty for .npy)"),
    ("band", "", "photometric band (argument or BAND/FILTER keyword)"),
    ("source_id", "", "source in the cutout: 0 = the target; 1, 2, ... the neighbours fitted "
                      "with it (--neighbours fit), brightest first"),
    ("is_target", "", "True for the target's row"),
    ("kind", "", "galaxy, or point (a point source: the PSF; shape columns empty)"),
    ("status", "", "converged, max_evaluations, cancelled or failed"),
    ("flags", "", "FitFlags bit mask (0 = nothing to report)"),
    ("flag_names", "", "names of the set FitFlags bits, joined by |"),
    ("reason", "", "why the fit failed or what went wrong after it (empty if nothing)"),
    ("profile", "", "target profile: exp, dev, lux, luv or ser"),
    ("M", "", "number of Gaussians in the profile mixture"),
    ("n", "", "Sersic index (profile ser only; fitted or fixed)", True),
    ("sky_model", "", "none, constant or plane"),
    ("psf_source", "", "PSF file and what it held (none = no PSF)"),
    ("psf_mode", "", "how the PSF entered the model: exact (the stamp itself: mixture + "
                     "residual by FFT), mixture (its Gaussians only) or pixel (no PSF: the "
                     "model integrated over the pixel)"),
    ("psf_k", "", "Gaussians in the PSF mixture (0 without PSF)"),
    ("psf_size_ratio", "", "second-moment size of the PSF mixture / the stamp's, inside 3 core "
                           "FWHMs (empty: no stamp, or its moments are undefined)"),
    ("psf_res_flux", "", "sum(stamp - mixture), stamp summed to 1: flux the mixture-only model "
                         "misses (empty without a stamp)"),
    ("psf_res_peak", "", "max|stamp - mixture| / max(stamp) (empty without a stamp)"),
    ("x", "pix", "centre x, 0-based pixel centres", True),
    ("y", "pix", "centre y, 0-based pixel centres", True),
    ("x_fits", "pix", "centre x, 1-based (FITS/GALFIT/DS9) = x + 1", True),
    ("y_fits", "pix", "centre y, 1-based (FITS/GALFIT/DS9) = y + 1", True),
    ("ra_deg", "deg", "world longitude of the centre (RA for an equatorial WCS); "
                      "error in RA itself, not RA cos(Dec)", True),
    ("dec_deg", "deg", "world latitude of the centre (Dec)", True),
    ("re_pix", "pix", "semi-major half-light radius of the target profile", True),
    ("re_arcsec", "arcsec", "re_pix times the local WCS scale along the major axis", True),
    ("re_circ_pix", "pix", "circularised half-light radius re_pix sqrt(q)", True),
    ("q", "", "axis ratio b/a <= 1", True),
    ("ell", "", "ellipticity 1 - q (imfit ell)", True),
    ("e1", "", "(1-q)/(1+q) cos(2 pa_img), image axes", True),
    ("e2", "", "(1-q)/(1+q) sin(2 pa_img), image axes", True),
    ("pa_img_deg", "deg", "major axis CCW from +x, [0, 180) (DS9 image angle)", True),
    ("pa_galfit_deg", "deg", "GALFIT/imfit PA CCW from +y = pa_img_deg - 90 in (-90, 90]",
     True),
    ("pa_eofn_deg", "deg", "PA east of north from the local WCS Jacobian, [0, 180)", True),
    ("flux", "image units", "total flux of the target profile (untruncated law, as GALFIT and "
                            "imfit report it) = flux_mog / flux_fraction", True),
    ("mag", "mag", "zeropoint - 2.5 log10(flux): total magnitude of the target profile", True),
    ("flux_mog", "image units", "total flux of the fitted mixture itself (its Gaussians' sum)",
     True),
    ("mag_mog", "mag", "zeropoint - 2.5 log10(flux_mog)", True),
    ("profile2", "", "second component of a composite (bulge + disk) model, sharing x, y"),
    ("M2", "", "number of Gaussians of the second component"),
    ("flux2", "image units", "total flux of the second component's mixture", True),
    ("re2_pix", "pix", "semi-major half-light radius of the second component", True),
    ("q2", "", "axis ratio b/a of the second component", True),
    ("pa2_img_deg", "deg", "second component's major axis CCW from +x, [0, 180)", True),
    ("bt", "", "flux / (flux + flux2): the first component's fraction of the model flux"),
    ("zeropoint", "mag", "magnitude of 1 image unit (given or from the header)"),
    ("sky", "image units/pix", "constant sky level (at the image centre for a plane)", True),
    ("sky_dx", "image units/pix^2", "sky gradient along x (sky plane)", True),
    ("sky_dy", "image units/pix^2", "sky gradient along y (sky plane)", True),
    ("err_scaled", "", "True if the _err columns are scaled by sqrt(chi2_nu)"),
    ("chi2", "", "sum of w (data - model)^2 over usable pixels"),
    ("nu", "", "degrees of freedom: usable pixels - free parameters"),
    ("chi2_nu", "", "chi2 / nu"),
    ("nfev", "", "residual evaluations"),
    ("free", "", "free parameters, joined by |"),
    ("pixel_scale_arcsec", "arcsec/pix", "mean pixel scale"),
    ("noise_source", "", "where the inverse variance came from"),
    ("noise_estimated", "", "True if the noise is an estimate, not a supplied map"),
    ("neighbours", "", "what was done with the other sources: ignore, mask (their segments "
                       "masked) or fit (modelled with the target)"),
    ("n_sources", "", "sources modelled jointly (1 = the target alone)"),
    ("n_detected", "", "sources detected in the cutout, the target included (empty: no "
                       "detection run)"),
    ("n_masked", "", "detected segments masked (--neighbours mask, or beyond "
                     "--max-neighbours, or artefacts)"),
    ("warnings", "", "warnings raised while reading or fitting, joined by |"),
    ("elapsed_s", "s", "wall time of the fit"),
    ("mogviewer_version", "", "mogviewer version that wrote the row"),
    *[(f"{name}_p{q}", unit, f"{q}th percentile of the posterior of {name} (--sample; empty "
       "otherwise)") for name, unit in _SAMPLED for q in (16, 50, 84)],
    ("sample_tau_max", "steps", "largest integrated autocorrelation time of the chains"),
    ("sample_ess_min", "", "smallest effective sample size over the sampled parameters"),
    ("sample_acceptance", "", "mean acceptance fraction of the walkers"),
    ("sample_converged", "", "True if every chain is longer than 50 autocorrelation times"),
    ("sample_steps", "steps", "steps per walker run (burn-in included)"),
    ("sample_prior", "", "the posterior's prior, e.g. 'flat in ln(flux), ln(re), ln(n); flat "
                         "in x, y, q, angle, sky' (within the fit's bounds)"),
]


@dataclasses.dataclass(frozen=True)
class Column:
    """One CSV column: ``name``, ``unit`` ('' = dimensionless or text) and ``description``."""

    name: str
    unit: str
    description: str


def _build_columns():
    cols = []
    for entry in _C:
        name, unit, desc = entry[:3]
        cols.append(Column(name, unit, desc))
        if len(entry) > 3 and entry[3]:
            cols.append(Column(f"{name}_err", unit, f"1-sigma error of {name}"))
            cols.append(Column(f"{name}_err_scaled", unit,
                               f"1-sigma error of {name} times sqrt(chi2_nu) (use when "
                               "ERRORS_UNDERESTIMATED is set)"))
    return tuple(cols)


#: The CSV columns, in order (data, not code: the GUI and docs read this).
COLUMNS = _build_columns()
#: Column names, in order.
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


def band_columns(bands):
    """The extra columns of a joint multi-band fit (``mogviewer fit --bands``), in order: per
    band its target-profile flux and magnitude, sky and reduced chi-squared; per pair of
    consecutive bands the colour. Each a :class:`Column`."""
    cols = [Column("bands", "", "bands fitted jointly, joined by |"),
            Column("ties", "", "which parameters the bands share, which are per band and which "
                               "follow wavelength"),
            Column("ref_band", "", "the band whose pixels x, y, re_pix are in (the one with "
                                   "the most signal); ra_deg, dec_deg are the same in all")]
    for b in bands:
        cols += [
            Column(f"flux_{b}", "image units", f"total flux of the target profile in band {b}"),
            Column(f"flux_{b}_err", "image units", f"1-sigma error of flux_{b}"),
            Column(f"mag_{b}", "mag", f"zeropoint_{b} - 2.5 log10(flux_{b})"),
            Column(f"mag_{b}_err", "mag", f"1-sigma error of mag_{b}"),
            Column(f"sky_{b}", "image units/pix", f"sky level of band {b}"),
            Column(f"sky_{b}_err", "image units/pix", f"1-sigma error of sky_{b}"),
            Column(f"chi2_nu_{b}", "", f"chi2 of band {b} / (its used pixels - its own "
                                       "parameters - shared parameters / number of bands)"),
            Column(f"re_{b}_pix", "pix", f"r_e in band {b} (= re_pix unless tied to "
                                         "wavelength), reference-band pixels"),
            Column(f"re_{b}_pix_err", "pix", f"1-sigma error of re_{b}_pix"),
            Column(f"n_{b}", "", f"Sersic n in band {b} (= n unless tied to wavelength)"),
            Column(f"n_{b}_err", "", f"1-sigma error of n_{b}")]
    for b1, b2 in zip(bands, bands[1:]):
        cols += [Column(f"{b1}_{b2}", "mag", f"colour mag_{b1} - mag_{b2}"),
                 Column(f"{b1}_{b2}_err", "mag", f"1-sigma error of {b1}_{b2}, the covariance "
                                                 "of the two fluxes included")]
    return tuple(cols)
