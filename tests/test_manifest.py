"""Manifests through the command line: per-object inputs, ids, --resume, --table.

Reference for the three GAMA galaxies (PROVENANCE.md s4, "Independent cross-check": a
single-Sersic least-squares fit inside the target segment, convolved with the normalised PSF,
3x3 subsampling, no sky term): KiDS 265911 mag 16.082, r_e 14.17 px, angle 141.4 deg (ProFit's,
counter-clockwise from +y); KiDS 279148 16.955, 14.44 px, 9.5 deg; SDSS 265911 16.173, 7.12 px,
140.9 deg. Tolerances: 0.03 mag and 3 % in r_e (the cross-check subsamples 3x3 where we render
exactly, and its PSF is the normalised stamp without re-centring), 1.5 deg in angle.
"""

import csv
from pathlib import Path

import pytest
from astropy.table import Table

from mogviewer import cli

REAL = Path(__file__).parent / "data" / "real"
GAMA = REAL / "profit-gama"
IC = REAL / "imfit-sdss"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_three_kids_like_objects_in_one_manifest_call(tmp_path, capsys):
    out = tmp_path / "gama.csv"
    assert cli.main(["fit", "--manifest", str(GAMA / "manifest.csv"), "--profile", "ser",
                     "--sky", "none", "--zeropoint", "0", "--psf-components", "3",
                     "--csv", str(out),
                     "--table", str(tmp_path / "gama.ecsv"), "--quiet"]) == 0
    err = capsys.readouterr().err
    # all three fitted; the two KiDS galaxies have chi2/nu > 1.2 (their sigma maps
    # underestimate the scatter), so they are flagged ERRORS_UNDERESTIMATED, not failed
    assert "3/3 objects:" in err and "0 failed" in err and "same file name" not in err
    t = Table.read(tmp_path / "gama.ecsv")          # the typed copy of the CSV
    assert list(t["object_id"]) == ["G265911-KiDS", "G279148-KiDS", "G265911-SDSS"]
    # each row used its own files (relative paths resolved against the manifest)
    assert t["file"][1] == str(GAMA / "KiDS" / "G279148fitim.fits")
    assert t["noise_source"][2].endswith(str(GAMA / "SDSS" / "G265911sigma.fits"))
    assert [s.split(" ")[0] for s in t["psf_source"]] == ["G265911psfim.fits",
                                                          "G279148psfim.fits",
                                                          "G265911psfim.fits"]
    ref = [(16.082, 14.17, 141.4), (16.955, 14.44, 9.5), (16.173, 7.12, 140.9)]
    for row, (mag, re, ang) in zip(t, ref):
        assert row["status"] == "converged"
        assert row["mag"] == pytest.approx(mag, abs=0.03)
        assert row["re_pix"] == pytest.approx(re, rel=0.03)
        d = (row["pa_galfit_deg"] - ang + 90) % 180 - 90      # ProFit's angle is GALFIT's
        assert abs(d) < 1.5


def _small_manifest(tmp_path, n=6):
    m = tmp_path / "objects.csv"
    profiles = ["exp", "dev", "lux", "exp", "dev", "lux", "exp", "dev"]
    lines = ["id,image,noise,profile"]
    for i in range(n):
        lines.append(f"obj{i},{IC / 'ic3478rss_64x64.fits'},{IC / 'ic3478rss_64x64_sigma.fits'},"
                     f"{profiles[i % len(profiles)]}")
    m.write_text("\n".join(lines) + "\n")
    return m


def test_ctrl_c_then_resume_fits_every_object_exactly_once(tmp_path, capsys, monkeypatch):
    from mogviewer.cli.survey import TextProgress

    m = _small_manifest(tmp_path)
    out = tmp_path / "out.csv"
    calls = []

    def interrupt_at_third(self, done, total, row):
        calls.append(row["object_id"])
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(TextProgress, "__call__", interrupt_at_third)
    assert cli.main(["fit", "--manifest", str(m), "--csv", str(out)]) == 130
    first = [r["object_id"] for r in _rows(out)]
    assert first == ["obj0", "obj1", "obj2"]                  # the rows done, nothing more
    monkeypatch.undo()
    assert cli.main(["fit", "--manifest", str(m), "--csv", str(out), "--resume",
                     "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "3/6 objects" in err and "3 already in the CSV" in err
    ids = [r["object_id"] for r in _rows(out)]
    assert sorted(ids) == [f"obj{i}" for i in range(6)]       # each exactly once
    # a second --resume has nothing to do and writes nothing
    size = out.stat().st_size
    assert cli.main(["fit", "--manifest", str(m), "--csv", str(out), "--resume",
                     "--quiet"]) == 0
    assert out.stat().st_size == size


def test_resume_keys_plain_files_by_name(tmp_path, capsys):
    out = tmp_path / "f.csv"
    a = str(IC / "ic3478rss_64x64.fits")
    args = ["fit", a, "--noise", str(IC / "ic3478rss_64x64_sigma.fits"), "--csv", str(out),
            "--quiet"]
    assert cli.main(args) == 0
    assert cli.main(args + ["--resume"]) == 0
    rows = _rows(out)
    assert [r["object_id"] for r in rows] == [a]              # not fitted again


@pytest.mark.parametrize("extra, message", [
    (["{ic}/ic3478rss_64x64.fits", "--manifest", "{m}"], "not FILE arguments and --manifest"),
    ([], "nothing to fit"),
    (["--image", "{ic}/ic3478rss_64x64.fits"], "needs both --image FIELD and --catalog"),
    (["--manifest", "{m}", "--weight", "{ic}/ic3478rss_64x64.fits"],
     "--weight applies to catalogue mode"),
    (["--manifest", "{m}", "--table", "{tmp}/t.xlsx"], "choose a .fits, .ecsv or .parquet"),
    (["--manifest", "{m}", "--table", "{m}"], "--table"),
    (["--image", "{ic}/ic3478rss_64x64.fits", "--catalog", "{m}", "--region", "{tmp}"],
     "--region is not available in catalogue mode"),
    (["--image", "{ic}/ic3478rss_64x64.fits", "--catalog", "{m}", "--noise", "{m}"],
     "--noise does not apply to catalogue mode"),
])
def test_mode_errors_are_one_line_and_status_2(tmp_path, capsys, extra, message):
    m = _small_manifest(tmp_path, 1)
    args = [a.format(ic=IC, m=m, tmp=tmp_path) for a in extra]
    assert cli.main(["fit", *args, "--csv", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_a_missing_manifest_file_is_a_failed_row(tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text(f"id,image\nok,{IC / 'ic3478rss_64x64.fits'}\ngone,nowhere.fits\n")
    out = tmp_path / "o.csv"
    assert cli.main(["fit", "--manifest", str(m), "--csv", str(out), "--quiet"]) == 1
    rows = {r["object_id"]: r for r in _rows(out)}
    assert rows["ok"]["status"] == "converged"
    assert rows["gone"]["status"] == "failed" and "nowhere.fits" in rows["gone"]["reason"]
    assert rows["gone"]["file"] == str(tmp_path / "nowhere.fits")   # resolved: manifest's dir
