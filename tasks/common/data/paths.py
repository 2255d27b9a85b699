"""The data search path: explicit root, then $SABN_DATA_DIR, then ./data, then ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from ..provenance import REPO_ROOT


class DataNotFoundError(FileNotFoundError):
    """A data set that is in none of the searched places, in none of the accepted layouts."""


class DataError(ValueError):
    """A data file that exists but cannot be read (truncated archive, corrupt image or pickle)."""


def data_search_path(root: Optional[str] = None) -> List[Path]:
    """Directories searched for data sets, in order. An explicit ``root`` must exist: a mistyped
    data.root would otherwise silently fall back to the other places (load_dataset downloads into a
    new root instead, where a download is allowed)."""
    places = []
    if root:
        if not Path(root).expanduser().is_dir():
            raise DataNotFoundError(f"data.root={root} is not a directory. Point data.root at the folder that holds "
                                    "your data sets (or create it, for a download to go there), or leave it unset "
                                    "to search $SABN_DATA_DIR, ./data and ../shared/data")
        places.append(Path(root).expanduser())
    if os.environ.get("SABN_DATA_DIR"):
        places.append(Path(os.environ["SABN_DATA_DIR"]).expanduser())
    places += [REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data"]
    seen, unique = set(), []
    for place in places:
        key = str(place.resolve()) if place.exists() else str(place)
        if key not in seen:
            seen.add(key)
            unique.append(place)
    return unique


def cache_dir() -> Path:
    """Where extracted archives and decoded tensors go ($SABN_CACHE_DIR or <repo>/.cache)."""
    path = Path(os.environ.get("SABN_CACHE_DIR", REPO_ROOT / ".cache")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def portable_path(path) -> str:
    """A path as it may appear in a result file: relative to the cache (``<cache>/...``) or to a data
    search place (``<data>/...``), else just its name; never this machine's absolute layout."""
    p = Path(path)
    for base, label in [(cache_dir(), "<cache>")] + [(place, "<data>") for place in data_search_path()]:
        try:
            return f"{label}/{p.resolve().relative_to(base.resolve())}"
        except (ValueError, OSError):
            continue
    return p.name
