"""Compile the pure modules listed in ticketbridge.compiled with mypyc, into the virtualenv.

    .venv/bin/python tools/build_compiled.py [--if-stale] [--remove]

The build goes to this interpreter's site-packages as the package `ticketbridge_compiled`, never next
to the sources. Its __init__.py is a manifest: the SHA-256 of every file compiled or imported by the
compiled modules, as they were read for the build. ticketbridge.compiled.adopt() uses the build only
while all of them are unchanged, so a stale build can never run. `make install` runs this with
--if-stale: nothing to do when the manifest matches the sources. Without mypyc or a C compiler it
removes any old build and exits 0: the service then runs as pure Python (a notice says so).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

from ticketbridge.compiled import COMPILED, PACKAGE  # noqa: E402

SITE = Path(sysconfig.get_paths()["purelib"])
FAILED = SITE / f"{PACKAGE}.failed"  # the sources a build failed for: not retried until they change


def module_path(name: str) -> Path:
    return SRC.joinpath(*name.split(".")).with_suffix(".py")


def imported(name: str, path: Path) -> set[str]:
    """The ticketbridge modules a module imports (directly)."""
    package = name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c.startswith("ticketbridge") and module_path(c).is_file())
    return found


def sources() -> dict[str, bytes]:
    """Relative path -> content of every file the build depends on, each read once."""
    names = set(COMPILED)
    for name in COMPILED:
        names |= imported(name, module_path(name))
    return {str(module_path(n).relative_to(SRC)): module_path(n).read_bytes() for n in sorted(names)}


def installed_manifest() -> dict[str, str] | None:
    init = SITE / PACKAGE / "__init__.py"
    if not init.is_file():
        return None
    namespace: dict[str, object] = {}
    exec(init.read_text(encoding="utf-8"), namespace)  # our own generated file
    found = namespace.get("SOURCES")
    return found if isinstance(found, dict) else None


def remove() -> None:
    shutil.rmtree(SITE / PACKAGE, ignore_errors=True)
    for lib in SITE.glob(f"{PACKAGE}__mypyc*"):
        lib.unlink()


def build(files: dict[str, bytes], digests: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ticketbridge-compiled-") as tmp:
        work = Path(tmp)
        package = work / PACKAGE
        package.mkdir()
        targets = []
        for name, compiled in COMPILED.items():
            target = package / (compiled.rsplit(".", 1)[1] + ".py")
            target.write_bytes(files[str(module_path(name).relative_to(SRC))])
            targets.append(str(target.relative_to(work)))
        manifest = ('"""The compiled build of ticketbridge modules (see ticketbridge.compiled)."""\n\n'
                    f"MODULES = {sorted(COMPILED)!r}\n"
                    f"SOURCES = {json.dumps(digests, indent=4, sort_keys=True)}\n")
        (package / "__init__.py").write_text(manifest, encoding="utf-8")
        (work / "mypy.ini").write_text(
            f"[mypy]\npython_version = 3.11\nmypy_path = {SRC}\nignore_missing_imports = True\n"
            "no_implicit_optional = True\ncheck_untyped_defs = True\n", encoding="utf-8")
        (work / "setup.py").write_text(
            "from setuptools import setup\nfrom mypyc.build import mypycify\n"
            f"setup(name={PACKAGE!r}, ext_modules=mypycify(['--config-file', 'mypy.ini', *{targets!r}], "
            f"opt_level='3', group_name={PACKAGE!r}))\n", encoding="utf-8")
        env = {**os.environ, "TICKETBRIDGE_PURE": "1"}
        done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode or os.environ.get("VERBOSE"):
            print(done.stdout[-6000:], file=sys.stderr)
        done.check_returncode()
        libs = list(work.glob(f"{PACKAGE}__mypyc*.so")) + list(work.glob(f"{PACKAGE}__mypyc*.pyd"))
        built = [p for p in package.iterdir() if p.suffix in (".so", ".pyd")]
        if len(built) != len(COMPILED):
            raise RuntimeError(f"mypyc built {[p.name for p in built]}, expected one per module of {sorted(COMPILED)}")
        (SITE / PACKAGE).mkdir()
        for item in [*built, *libs]:
            shutil.copy2(item, (SITE / PACKAGE / item.name) if item in built else SITE / item.name)
        shutil.copy2(package / "__init__.py", SITE / PACKAGE / "__init__.py")  # the manifest last


def check() -> None:
    """The installed build imports and is adopted (in a fresh interpreter)."""
    probe = ("import ticketbridge.sync.policy.calendar as c, ticketbridge.sync.policy.sla as s; "
             "assert (c.IMPLEMENTATION, s.IMPLEMENTATION) == ('compiled', 'compiled'), "
             "(c.IMPLEMENTATION, s.IMPLEMENTATION)")
    env = {k: v for k, v in os.environ.items() if k != "TICKETBRIDGE_PURE"}
    subprocess.run([sys.executable, "-c", probe], env=env, check=True, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--if-stale", action="store_true", help="do nothing when the build matches the sources")
    parser.add_argument("--remove", action="store_true", help="remove the build (pure Python from then on)")
    args = parser.parse_args()
    if args.remove:
        remove()
        FAILED.unlink(missing_ok=True)
        return 0
    files = sources()
    digests = {path: hashlib.sha256(content).hexdigest() for path, content in files.items()}
    if args.if_stale:
        if installed_manifest() == digests:
            return 0
        if FAILED.is_file() and FAILED.read_text(encoding="utf-8") == json.dumps(digests, sort_keys=True):
            return 0  # failed for these very sources already; the notice was shown then
    remove()
    FAILED.unlink(missing_ok=True)
    print(f"compiling {', '.join(sorted(COMPILED))} with mypyc (into {SITE / PACKAGE}) ...", file=sys.stderr)
    try:
        import mypyc.build  # noqa: F401  (only to say clearly when it is missing)

        build(files, digests)
        check()
    except (ImportError, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        remove()
        FAILED.write_text(json.dumps(digests, sort_keys=True), encoding="utf-8")
        print(f"compiled build unavailable ({exc}): ticketbridge runs as pure Python", file=sys.stderr)
        return 0
    print("compiled build installed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
