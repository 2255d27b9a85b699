"""Shared entry-point plumbing: user errors become one clear message and exit code 2."""
from __future__ import annotations

import functools
import sys

from omegaconf.errors import OmegaConfBaseException

from .checkpoint import CheckpointError
from .config import ConfigError
from .data import DataNotFoundError
from .nonfinite import EXIT_CODE as NONFINITE_EXIT, NonFiniteError
from .rundir import RunDirError

USER_ERRORS = (ConfigError, DataNotFoundError, CheckpointError, RunDirError, ValueError, OmegaConfBaseException)


def friendly_errors(main):
    """Run ``main``; a user error prints 'error: <message>' without a traceback and exits with 2, a
    non-finite value in training or in a checkpoint with 3."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except NonFiniteError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(NONFINITE_EXIT)
        except USER_ERRORS as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    return wrapper
