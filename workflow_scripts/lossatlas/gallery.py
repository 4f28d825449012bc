"""The README's gallery and claims headline, regenerated from a run (rule ``readme_gallery``, `snakemake readme`).

Writes small copies of a few figures to docs/gallery/ (docs/gallery/medium/ for a medium run) and replaces the
README block of the run's scale, between the ``<!-- gallery -->`` markers (``<!-- gallery medium -->`` for a
medium run: ``markers``), with those images and the claims table's headline, so the README shows what the
pipeline computed and is never edited by hand.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from lossatlas.claims import ClaimResult, headline, scale_name
from lossatlas.io import atomic_path

START, END = "<!-- gallery -->", "<!-- /gallery -->"


def markers(scale: str) -> tuple[str, str]:
    """The README block of a run at ``scale`` (the claims table's scale column: ``medium (configs/...)``)."""
    base = scale_name(scale)
    return (START, END) if base == "default" else (f"<!-- gallery {base} -->", f"<!-- /gallery {base} -->")


def shrink(src: str, dst: str, width: int = 560) -> None:
    """A small PNG copy (the README gallery stays a few hundred kB in git)."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        with atomic_path(dst) as tmp:
            im.save(tmp, format="PNG", optimize=True)


def claims_rows(claims_csv: str) -> tuple[list[ClaimResult], str]:
    with open(claims_csv, newline="") as fh:
        raw = list(csv.DictReader(fh))
    rows = [ClaimResult(id=r["id"], paper=r["paper"], where=r["where"], claim=r["claim"],
                        paper_value=r["paper_value"], ours=r["ours"], outcome=r["outcome"], reason=r["reason"],
                        figures=[], kind=r["kind"], claim_scale=r["claim_scale"], why=r["why"]) for r in raw]
    return rows, (raw[0]["scale"] if raw else "default")


def update_readme(readme: str, images: list[str], captions: list[str], claims_csv: str) -> None:
    rows, scale = claims_rows(claims_csv)
    start, end = markers(scale)
    block = [start, "", f"**Claims:** {headline(rows, scale)} Full table: `results/claims.md` after a run.", ""]
    for path, caption in zip(images, captions, strict=True):
        block.append(f"![{caption}]({path})")
        block.append("")
    block.append(end)
    text = Path(readme).read_text()
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    with atomic_path(readme) as tmp:
        tmp.write_text(head + "\n".join(block) + tail)


def make_gallery(figures: list[str], out_pngs: list[str], captions: list[str], claims_csv: str, readme: str) -> None:
    """Shrink ``figures`` into ``out_pngs`` (same order) and refresh the README block."""
    for src, dst in zip(figures, out_pngs, strict=True):
        shrink(src, dst)
    update_readme(readme, out_pngs, captions, claims_csv)
