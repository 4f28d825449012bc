"""Paper-scale and medium-scale configs: each paper's file is valid on its own, and configs/paper.yaml and
configs/medium.yaml are their compositions."""

from __future__ import annotations

import pytest
import yaml

from lossatlas.compose import ComposeError, compose, load_paper_configs, main
from lossatlas.config import PAPERS, validate_config

from .conftest import REPO

PAPER_FILES = sorted((REPO / "configs").glob("*.yaml"))
MEDIUM_FILES = sorted((REPO / "configs" / "medium").glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER_FILES + MEDIUM_FILES, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_paper_config_is_valid(path):
    validate_config(yaml.safe_load(path.read_text()))


def test_every_paper_has_a_paper_scale_and_a_medium_config():
    assert {p.stem for p in PAPER_FILES} >= set(PAPERS) | {"paper", "medium"}
    assert {p.stem for p in MEDIUM_FILES} == set(PAPERS)


@pytest.mark.parametrize("composed, folder", [("paper.yaml", "."), ("medium.yaml", "medium")])
def test_composed_configs_are_the_compositions(composed, folder):
    assert main(["--check"]) == 0, "run `python -m lossatlas.compose` to regenerate configs/paper.yaml, medium.yaml"
    studies = yaml.safe_load((REPO / "configs" / composed).read_text())["studies"]
    assert set(studies) == set(load_paper_configs(REPO / "configs" / folder)) == set(PAPERS)


def test_compose_refuses_a_name_defined_twice_differently():
    a = {"datasets": {"d": {"source": "digits"}}, "studies": {"universality": {}}}
    b = {"datasets": {"d": {"source": "iris"}}, "studies": {"embedding": {}}}
    with pytest.raises(ComposeError, match="datasets.d"):
        compose({"universality": a, "embedding": b})
    same = {"datasets": {"d": {"source": "digits"}}, "studies": {"embedding": {}}}
    assert compose({"universality": a, "embedding": same})["datasets"] == {"d": {"source": "digits"}}


def test_scales_are_declared():
    """The claims table judges paper-scale findings only in a study that declares `scale: paper`: each paper's
    config and their composition do, the medium ones declare `scale: medium`, the default study declares neither,
    and a config that says nothing is default."""
    for name in [*PAPERS, "paper"]:
        cfg = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
        assert cfg.get("scale") == "paper", f"configs/{name}.yaml must declare scale: paper"
    for name in [*(f"medium/{p}" for p in PAPERS), "medium"]:
        cfg = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
        assert cfg.get("scale") == "medium", f"configs/{name}.yaml must declare scale: medium"
    assert validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))["scale"] == "default"
    unsaid = yaml.safe_load((REPO / "config.yaml").read_text())
    del unsaid["scale"]
    assert validate_config(unsaid)["scale"] == "default"
