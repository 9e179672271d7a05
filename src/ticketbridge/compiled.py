"""Compiled builds of pure modules: used only when built from exactly the current sources.

The Python sources stay the one source of truth. `make install` (and so `make test` and `make demo`)
runs tools/build_compiled.py, which compiles the modules in COMPILED with mypyc into the virtualenv
as the package `ticketbridge_compiled`, never next to the sources, together with a manifest: the
SHA-256 of every file the build was compiled from (the modules and the ones they import).

Each of those modules ends with `IMPLEMENTATION = adopt(globals())`. When the build is importable
and every file of its manifest is unchanged, adopt() replaces the module's names by the compiled
ones and answers "compiled"; otherwise the Python code stays, it answers "pure" and logs why (a
source edited since the build: run `make install`). TICKETBRIDGE_PURE=1 turns the build off.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["COMPILED", "PACKAGE", "adopt", "build_problem", "source_digest"]

PACKAGE = "ticketbridge_compiled"
# Module -> its compiled build. They are built and adopted together (sla calls calendar natively).
COMPILED = {
    "ticketbridge.sync.policy.calendar": f"{PACKAGE}.calendar",
    "ticketbridge.sync.policy.sla": f"{PACKAGE}.sla",
}
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the directory that holds the ticketbridge package

log = logging.getLogger(__name__)


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@cache
def build_problem() -> str | None:
    """Why the compiled build cannot be used (None: it can). Checked once per process."""
    if os.environ.get("TICKETBRIDGE_PURE"):
        return "TICKETBRIDGE_PURE is set"
    try:
        manifest = importlib.import_module(PACKAGE)
    except ImportError:
        return "not built"
    sources: dict[str, str] = getattr(manifest, "SOURCES", {})
    if not sources or set(COMPILED) - set(getattr(manifest, "MODULES", ())):
        return "the build is incomplete; run `make install`"
    changed = []
    for relative, digest in sources.items():
        path = SOURCE_ROOT / relative
        if not path.is_file() or source_digest(path) != digest:
            changed.append(relative)
    if changed:
        return f"{', '.join(changed)} changed since it was built; run `make install`"
    return None


def adopt(namespace: dict[str, Any]) -> str:
    """Replace the names of the pure module `namespace` by those of its compiled build, if usable.
    Answers "compiled" or "pure"."""
    name = namespace["__name__"]
    if name in COMPILED.values():
        return "compiled"  # the build itself
    target = COMPILED.get(name)
    if target is None:
        return "pure"  # the source loaded under another name (tests comparing the two)
    problem = build_problem()
    if problem is None:
        try:
            module = importlib.import_module(target)
        except Exception as exc:  # a broken build must never stop the service: the source still works
            problem = f"cannot import {target}: {exc!r}"
    if problem is not None:
        if problem not in ("not built", "TICKETBRIDGE_PURE is set"):  # only a surprise is worth a warning
            log.warning("%s runs as pure Python: compiled build not used (%s)", name, problem)
        return "pure"
    adopted = {key: value for key, value in vars(module).items() if not (key.startswith("__") and key.endswith("__"))}
    for value in adopted.values():
        if isinstance(value, type) and value.__module__ == target:
            # Its classes are this module's: pickles, reprs and logs name them as the source does.
            value.__module__ = name
    namespace.update(adopted)
    return "compiled"
