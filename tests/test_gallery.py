"""The README gallery block is regenerated from a run's figures and claims table."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from lossatlas.claims import CSV_COLUMNS
from lossatlas.gallery import END, START, make_gallery


def test_gallery_block_is_replaced_and_images_shrunk(tmp_path):
    big = tmp_path / "fig.png"
    Image.new("RGB", (1200, 600), "white").save(big)
    claims = tmp_path / "claims.csv"
    with open(claims, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        w.writerow(["a", "p", "w", "c", "1", "1", "default", "holds", "r"])
        w.writerow(["b", "p", "w", "c", "1", "2", "default", "not run", "r"])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold text\n{END}\noutro\n")
    out = tmp_path / "docs" / "p.png"
    make_gallery([str(big)], [str(out)], ["Paper P, Fig 1"], str(claims), str(readme))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old text" not in text
    assert "2 claims checked at default scale: 1 hold, 0 do not hold" in text and "1 not run" in text
    assert f"![Paper P, Fig 1]({out})" in text
    with Image.open(out) as im:
        assert im.width == 560 and im.height == 280


def test_readme_without_markers_is_refused(tmp_path):
    claims = tmp_path / "claims.csv"
    claims.write_text(",".join(CSV_COLUMNS) + "\n")
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="gallery"):
        make_gallery([], [], [], str(claims), str(readme))
