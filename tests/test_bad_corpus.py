"""The bad-input corpus (tests/data/bad, made by scripts/make_bad_corpus.py) through the batch
command line, as a user would run it (issue 5): each problem is one clear line naming the file
and the problem, the good files are still fitted, exit statuses are the documented ones
(0 all fitted, 1 some files failed, 2 bad command-line input), and no output is half-written."""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from mogviewer import cli

BAD = Path(__file__).parent / "data" / "bad"

EXPECTED = {  # file -> a phrase the reason must contain
    "truncated.fits": "truncated or corrupt",
    "not_fits.fits": "neither a FITS file nor a .npy",
    "empty_hdu.fits": "no 2-D image HDU",
    "cube.fits": "3-D cube",
    "tiny_1x1.fits": "1x1",
    "all_nan.fits": "no finite pixel",
}


def run(args, capsys):
    status = cli.main(["fit", *map(str, args), "--quiet"])
    return status, capsys.readouterr().err


def test_corpus_is_complete():
    names = {p.name for p in BAD.glob("*.fits")}
    assert set(EXPECTED) | {"good.fits", "broken_wcs.fits", "noise_wrong_shape.fits",
                            "negative_variance.fits", "mask_wrong_shape.fits"} <= names


def test_batch_over_the_corpus(tmp_path, capsys):
    files = [BAD / "good.fits", BAD / "broken_wcs.fits"] + [BAD / f for f in EXPECTED]
    out = tmp_path / "fits.csv"
    status, err = run([*files, "--csv", out, "--region", tmp_path / "reg"], capsys)
    assert status == 1  # some files failed
    t = Table.read(out, format="csv")
    assert len(t) == len(files)
    rows = {Path(r["file"]).name: r for r in t}
    # the good cutout and the one with a broken WCS (dropped with a note) are fitted; no PSF is
    # given, so r_e absorbs the sigma 1.5 px PSF of the simulation: 4 px -> about 5 px
    for name in ("good.fits", "broken_wcs.fits"):
        assert rows[name]["status"] == "converged", rows[name]["reason"]
        assert 4.0 < rows[name]["re_pix"] < 6.0
    assert abs(rows["good.fits"]["ra_deg"] - 150.0) < 0.01  # the good WCS gives RA/Dec
    assert rows["broken_wcs.fits"]["ra_deg"] is np.ma.masked  # the broken one gives none
    failed_lines = [ln for ln in err.splitlines() if ln.strip().startswith("failed:")]
    assert len(failed_lines) == len(EXPECTED)
    for name, phrase in EXPECTED.items():
        assert rows[name]["status"] == "failed"
        assert phrase in rows[name]["reason"], (name, rows[name]["reason"])
        line = [ln for ln in failed_lines if name in ln]
        assert len(line) == 1 and phrase in line[0]
    # region files only for the fitted ones, and no temporary files anywhere
    assert sorted(p.name for p in (tmp_path / "reg").iterdir()) == ["broken_wcs.reg", "good.reg"]
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.parametrize("opts,phrase", [
    (["--noise", BAD / "noise_wrong_shape.fits"], "noise map"),
    (["--noise", BAD / "negative_variance.fits", "--noise-kind", "variance"],
     "no positive finite values"),
    (["--mask", BAD / "mask_wrong_shape.fits"], "they must match"),
])
def test_bad_noise_and_mask_are_flagged_rows(opts, phrase, tmp_path, capsys):
    out = tmp_path / "x.csv"
    status, err = run([BAD / "good.fits", *opts, "--csv", out], capsys)
    assert status == 1
    row = Table.read(out, format="csv")[0]
    assert row["status"] == "failed" and phrase in row["reason"]
    assert phrase in err and err.count("\n") <= 3


@pytest.mark.parametrize("target,phrase", [("dir", "it is a directory"),
                                           ("/proc/mogviewer/x.csv", "does not exist")])
def test_unwritable_csv_is_a_one_line_error_before_any_fit(target, phrase, tmp_path, capsys):
    if target == "dir":
        target = tmp_path / "adir"
        target.mkdir()
    status, err = run([BAD / "good.fits", "--csv", target], capsys)
    assert status == 2
    assert err.strip().count("\n") == 0 and phrase in err and err.startswith("mogviewer")


def test_existing_csv_survives_a_failed_append(tmp_path, capsys):
    out = tmp_path / "keep.csv"
    assert run([BAD / "good.fits", "--csv", out], capsys)[0] == 0
    before = out.read_bytes()
    # appending rows with other columns is refused and the file is left exactly as it was
    out.write_bytes(b"a,b\n1,2\n")
    before = out.read_bytes()
    status, err = run([BAD / "good.fits", "--csv", out, "--append"], capsys)
    assert status == 2 and "columns differ" in err
    assert out.read_bytes() == before
