"""The package and the image as a platform engineer checks them: the declared license is the file shipped,
the build backend can build that declaration, each image (the operator's, the Celery exporter's) installs only
hash-checked distributions, and its OCI labels say what it is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
# Each image's build context (its Dockerfile, requirements.lock and pyproject.toml) and its title label.
IMAGES = {"scalekeeper": ROOT, "scalekeeper-celery-exporter": ROOT / "exporter"}


def _pyproject(context: Path = ROOT) -> dict[str, Any]:
    with (context / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _lock(context: Path) -> dict[str, tuple[str, list[str]]]:
    """A context's requirements.lock as {canonical name: (pinned version, hashes)}."""
    text = (context / "requirements.lock").read_text().replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert m, f"requirements.lock: not a pin with hashes: {line[:120]}"
        pins[canonicalize_name(m.group(1))] = (m.group(2), re.findall(r"sha256:([0-9a-f]{64})", m.group(3)))
    return pins


def test_the_declared_license_is_the_shipped_file() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    head = (ROOT / "LICENSE").read_text().split()
    assert head[:5] == ["Apache", "License", "Version", "2.0,", "January"], head[:5]


def test_the_build_backend_can_build_an_spdx_license() -> None:
    # setuptools learned PEP 639 (`license = "<SPDX>"`, license-files) in 77; older ones refuse the table.
    (setuptools,) = [Requirement(r) for r in _pyproject()["build-system"]["requires"]]
    assert setuptools.name == "setuptools"
    assert not setuptools.specifier.contains("76.1.0") and setuptools.specifier.contains("77.0.1")


@pytest.mark.parametrize("context", IMAGES.values(), ids=IMAGES.keys())
def test_the_lock_pins_every_dependency_with_hashes(context: Path) -> None:
    pins = _lock(context)
    assert all(hashes for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if not h]
    pyproject = _pyproject(context)
    # What the image installs: the runtime dependencies (and those locked for the image only), and the
    # backend that builds the package offline.
    image_only = pyproject["project"].get("optional-dependencies", {}).get("image", [])
    for spec in pyproject["project"]["dependencies"] + image_only + pyproject["build-system"]["requires"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{context.name}/requirements.lock lacks {req.name} (run make lock)"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name][0]}, pyproject.toml wants {req.specifier}"
        )


def test_the_images_share_the_release_version() -> None:
    # The release tags both images with one version, and the chart installs both at its appVersion.
    assert _pyproject(ROOT / "exporter")["project"]["version"] == _pyproject()["project"]["version"]


@pytest.mark.parametrize("context", IMAGES.values(), ids=IMAGES.keys())
def test_the_image_installs_only_hash_checked_distributions(context: Path) -> None:
    text = (context / "Dockerfile").read_text().replace("\\\n", " ")
    installs = re.findall(r"pip install [^&\n]*", text)
    assert installs, "no pip install in the Dockerfile"
    for command in installs:
        words = command.split()
        locked = "--require-hashes" in words and "requirements.lock" in words
        # The package itself: nothing else (--no-deps), and no isolated build fetching setuptools unhashed.
        own = "--no-deps" in words and "--no-build-isolation" in words and words[-1] == "."
        assert locked or own, command


@pytest.mark.parametrize(("title", "context"), IMAGES.items(), ids=IMAGES.keys())
def test_the_image_is_labelled(title: str, context: Path) -> None:
    dockerfile = (context / "Dockerfile").read_text()
    labels = dict(
        re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', dockerfile.split("LABEL", 1)[1])
    )
    urls = _pyproject()["project"]["urls"]
    assert labels["org.opencontainers.image.title"] == title
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.source"] == urls["Source"]
    assert labels["org.opencontainers.image.licenses"] == _pyproject(context)["project"]["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert re.search(r"^ARG VERSION=", dockerfile, re.M)
    # The base stays an argument (the local cluster builds on its own Debian Python).
    assert re.search(r"^ARG BASE_IMAGE=\S+", dockerfile, re.M)
