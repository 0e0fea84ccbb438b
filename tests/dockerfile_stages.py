"""The root Dockerfile's stages, as the image and skaffold tests read them."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"
#: The stages that are steps towards an image, not an image of a service.
BUILD_STAGES = frozenset({"deps", "builder", "runtime-base", "runtime"})


def service_targets() -> list[str]:
    """The Dockerfile's service targets: every stage but the build stages, sorted."""
    return sorted(set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.M)) - BUILD_STAGES)
