"""The README gallery block is regenerated from a run's figures and claims table."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from lossatlas.claims import CSV_COLUMNS
from lossatlas.gallery import END, START, make_gallery, markers


def test_gallery_block_is_replaced_and_images_shrunk(tmp_path):
    big = tmp_path / "fig.png"
    Image.new("RGB", (1200, 600), "white").save(big)
    claims = tmp_path / "claims.csv"
    with open(claims, "w", newline="") as fh:
        w = csv.DictWriter(fh, CSV_COLUMNS)
        w.writeheader()
        row = dict(paper="p", where="w", claim="c", paper_value="1", ours="1", scale="default", kind="finding",
                   claim_scale="any", reason="r", why="")
        w.writerow({**row, "id": "a", "outcome": "holds"})
        w.writerow({**row, "id": "b", "outcome": "does not hold", "why": "too small"})
        w.writerow({**row, "id": "c", "outcome": "paper scale only", "claim_scale": "paper"})
        w.writerow({**row, "id": "d", "outcome": "holds", "kind": "setting", "claim_scale": "paper"})
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold text\n{END}\noutro\n")
    out = tmp_path / "docs" / "p.png"
    make_gallery([str(big)], [str(out)], ["Paper P, Fig 1"], str(claims), str(readme))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old text" not in text
    assert ("**Claims:** findings judged at default scale: 1 of 2 hold (1 paper scale only, 0 reported); "
            "settings: 1 of 1 match the papers.") in text
    assert f"![Paper P, Fig 1]({out})" in text
    with Image.open(out) as im:
        assert im.width == 560 and im.height == 280


def test_a_medium_run_fills_its_own_block(tmp_path):
    claims = tmp_path / "claims.csv"
    with open(claims, "w", newline="") as fh:
        w = csv.DictWriter(fh, CSV_COLUMNS)
        w.writeheader()
        w.writerow(dict(id="a", paper="p", where="w", claim="c", paper_value="1", ours="1", kind="finding",
                        scale="medium (configs/medium.yaml)", claim_scale="medium", outcome="holds", reason="r",
                        why=""))
    start, end = markers("medium (configs/medium.yaml)")
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\ndefault\n{END}\n{start}\nstale text\n{end}\n")
    make_gallery([], [], [], str(claims), str(readme))
    text = readme.read_text()
    assert f"{START}\ndefault\n{END}" in text and "stale text" not in text
    assert "findings judged at medium scale: 1 of 1 hold" in text.split(start)[1]


def test_readme_without_markers_is_refused(tmp_path):
    claims = tmp_path / "claims.csv"
    claims.write_text(",".join(CSV_COLUMNS) + "\n")
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="gallery"):
        make_gallery([], [], [], str(claims), str(readme))
