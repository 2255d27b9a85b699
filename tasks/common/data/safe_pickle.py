"""Data-set batch files read with a restricted unpickler: only what the formats hold is admitted.

CIFAR's and ImageNet16's batch files are pickles of dicts, lists, strings, bytes, numbers and numpy
arrays. ``pickle.load`` would run any callable a crafted file names; this unpickler resolves only the
numpy reconstruction functions those arrays need and refuses everything else, naming the file."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .paths import DataError

# (module, name) pairs numpy arrays and scalars pickle through, in numpy 1.x and 2.x spellings, and the
# codec Python 3 uses for bytes in protocol-2 pickles.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, handle, path: Path, encoding: str) -> None:
        super().__init__(handle, encoding=encoding)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"{self.path} is not a plain data file: it asks to load '{module}.{name}', which the "
                        "CIFAR / ImageNet16 batch format never holds (a pickle naming code can run it), so it "
                        "was not read. Replace it with a copy from the data set's own archive")


def load_data_pickle(path: Path, encoding: str = "bytes") -> Any:
    """Unpickle a data-set batch file, admitting only dicts, lists, str, bytes, numbers and numpy arrays."""
    with open(path, "rb") as handle:
        return _DataUnpickler(handle, Path(path), encoding).load()
