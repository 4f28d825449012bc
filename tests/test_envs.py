"""The conda environment and the pip requirements pin the same versions."""

from __future__ import annotations

import yaml

from .conftest import REPO


def pip_pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_conda_env_parses_and_matches_requirements():
    env = yaml.safe_load((REPO / "envs" / "lossatlas.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = dict(item.lower().split("==") for item in pip_section)
    assert conda_pins == pip_pins(REPO / "envs" / "requirements.txt")
    assert "python=3.11" in env["dependencies"]


def test_torch_pinned_and_no_torchvision():
    pins = pip_pins(REPO / "envs" / "requirements.txt")
    assert pins["torch"] == "2.13.0"
    assert "torchvision" not in pins
