"""Issue 17 in the app's exports: the DS9 region and the model JSON hold every source of the
scene (point sources as points, galaxies as ellipses, the target marked), and the model JSON
opens again with all of them (pytest-qt, offscreen)."""

import json

import pytest

from mogviewer.gui import engine


def _scene(w):
    """The sample with two other sources: a point source and an exponential galaxy."""
    c = w.commands
    assert c.add_source("point", 40.0, 200.0)
    assert c.add_source("exp", 210.0, 50.0)
    nb = list(w.state.neighbours)
    nb[1] = engine.moved_source(nb[1], x=210.0, y=50.0, re=7.5, q=0.4, angle=30.0)
    w.state.set_neighbours(nb)
    return w.state.neighbours


def test_region_holds_every_source(window, tmp_path):
    w, s = window, window.state
    nb = _scene(w)
    out = tmp_path / "scene.reg"
    assert w.commands.export_region(out)
    lines = out.read_text().splitlines()
    end = lines.index("fk5") if "fk5" in lines else len(lines)   # the sample has a WCS
    image = lines[lines.index("image") + 1:end]
    # the target: green (the global colour), labelled, its half-light ellipse, 1-based centre
    p = s.params
    target = [ln for ln in image if "text={target" in ln]
    assert len(target) == 1 and target[0].startswith("ellipse(")
    vals = [float(v) for v in target[0].split("(")[1].split(")")[0].split(",")]
    assert vals == pytest.approx([p.x + 1, p.y + 1, p.re, p.q * p.re, p.angle], abs=1e-5)
    # the point source as a DS9 point, the galaxy as its ellipse (semi-axes re, q re)
    points = [ln for ln in image if ln.startswith("point(")]
    ells = [ln for ln in image if ln.startswith("ellipse(") and "neighbour" in ln]
    assert len(points) == 1 and len(ells) == 1
    px = [float(v) for v in points[0].split("(")[1].split(")")[0].split(",")]
    assert px == pytest.approx([nb[0].x + 1, nb[0].y + 1], abs=1e-5)
    ev = [float(v) for v in ells[0].split("(")[1].split(")")[0].split(",")]
    assert ev == pytest.approx([211.0, 51.0, 7.5, 3.0, 30.0], abs=1e-5)
    assert "color=yellow" in ells[0] and "(exp)" in ells[0]


def test_model_json_round_trip_with_every_source(window, tmp_path, errors):
    w, s = window, window.state
    nb = _scene(w)
    p0 = s.params
    out = tmp_path / "scene.json"
    assert w.commands.export_model_json(out)
    doc = json.loads(out.read_text())
    srcs = doc[engine.SCENE_KEY]
    assert [d["kind"] for d in srcs] == ["galaxy", "point", "galaxy"]
    assert [d["is_target"] for d in srcs] == [True, False, False]
    assert srcs[0]["x"] == p0.x and srcs[2]["q"] == 0.4
    # the file is still an ordinary model file for the command line's --start
    assert engine.read_model_json(out).params == p0
    # a new session state: no other sources, another start; opening the file restores all
    w.commands.delete_source(2)
    w.commands.delete_source(1)
    w.commands.push_params(p0.replace(x=p0.x + 5.0), "move")
    assert s.neighbours == ()
    assert w.commands.open_model(out) and not errors
    assert s.neighbours == nb                      # exactly: floats are written with repr
    assert s.params == p0
    # one undo step takes back the whole load (sources and target)
    w.commands.undo_stack.undo()
    assert s.neighbours == () and s.params.x == pytest.approx(p0.x + 5.0)


def test_model_json_with_a_bad_source_is_refused(window, tmp_path, errors):
    w, s = window, window.state
    _scene(w)
    out = tmp_path / "scene.json"
    assert w.commands.export_model_json(out)
    doc = json.loads(out.read_text())
    doc[engine.SCENE_KEY][1]["kind"] = "star"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    before = (s.neighbours, s.params)
    assert not w.commands.open_model(bad)
    assert errors and "source 1" in errors[-1][1] and "'star'" in errors[-1][1]
    assert (s.neighbours, s.params) == before       # nothing half loaded
