"""``python -m infer_callbacks.sidecar``: see :mod:`infer_callbacks.sidecar.cli`."""

from infer_callbacks.sidecar.cli import main

raise SystemExit(main())
