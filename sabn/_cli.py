"""Console scripts of the repository's tasks (``stylize``), reached from an editable install.

The wheel holds the library only; the style-transfer code lives in the checkout's ``tasks/``. An
editable install (``make install``, ``pip install -e .``) puts ``sabn`` inside that checkout, so the
entry point finds ``tasks/`` beside it; elsewhere it says what to do instead of an ImportError."""
from __future__ import annotations

import sys
from pathlib import Path


def stylize() -> None:
    """``stylize --content ... --style ... --ckpt <nst run>/checkpoints/last.pt --out <folder>``."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "tasks" / "nst" / "stylize.py").is_file():
        sys.exit("error: stylize runs from a checkout of the sabn repository (pip install -e <checkout>); "
                 "this installation has the library only")
    sys.path.insert(0, str(root))
    from tasks.nst.stylize import main
    main()
