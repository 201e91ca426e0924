"""Type-check the whole ``tokenomy`` package with mypy, as it is laid out once installed.

Usage (from any directory; extra arguments go to mypy)::

    python .ci/typecheck.py
    python .ci/typecheck.py --no-incremental

Why a script: pyproject.toml maps ``agents/``, ``market/`` and ``scenarios/`` onto
``tokenomy.agents``, ``tokenomy.market`` and ``tokenomy.scenarios``. An editable install resolves
that with an import hook mypy cannot follow, and checking the folders directly would give them the
wrong module names. So this builds a temporary tree of symlinks with the installed layout, runs
``mypy -p tokenomy`` inside it with the project's pyproject.toml and a cache in the repo's
``.mypy_cache``, and rewrites the paths in mypy's output back to the real files, so editors can
jump to them. The exit code is mypy's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
_PATH_AT_LINE_START = re.compile(r"^([^\s:]+\.pyi?)(?=:)")


def package_dirs() -> dict[str, str]:
    """Mirror-relative folder -> real repo folder, read from ``[tool.setuptools] package-dir``.

    Longest mirror folder first, so ``tokenomy/agents`` wins over ``tokenomy`` when mapping back.
    """
    with PYPROJECT.open("rb") as f:
        mapping: dict[str, str] = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    dirs = {pkg.replace(".", "/"): real for pkg, real in mapping.items()}
    return dict(sorted(dirs.items(), key=lambda kv: -len(kv[0])))


def build_mirror(mirror: Path, dirs: dict[str, str]) -> None:
    """Link every file of each real folder to its place in the installed layout (copy if links are refused)."""
    for pkg_dir, real_dir in dirs.items():
        src = ROOT / real_dir
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if "__pycache__" in rel.parts or not path.is_file():
                continue
            dest = mirror / pkg_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                dest.symlink_to(path)
            except OSError:  # Windows without symlink rights: a copy gives the same report
                shutil.copy2(path, dest)


def real_path(mirror_path: str, mirror: Path, dirs: dict[str, str]) -> str:
    """A path as mypy printed it inside the mirror -> the real file, relative to the caller's cwd."""
    p = Path(mirror_path)
    if p.is_absolute():
        try:
            p = p.relative_to(mirror)
        except ValueError:  # outside the mirror (typeshed, site-packages): already real
            return mirror_path
    rel = p.as_posix()
    for pkg_dir, real_dir in dirs.items():
        if rel.startswith(pkg_dir + "/"):
            real = ROOT / real_dir / rel[len(pkg_dir) + 1 :]
            try:
                return os.path.relpath(real)
            except ValueError:  # another drive on Windows
                return str(real)
    return mirror_path


def main(argv: list[str]) -> int:
    dirs = package_dirs()
    with tempfile.TemporaryDirectory(prefix="tokenomy-typecheck-") as tmp:
        mirror = Path(tmp)
        build_mirror(mirror, dirs)
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(PYPROJECT),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            *argv,
            "-p",
            "tokenomy",
        ]
        proc = subprocess.run(cmd, cwd=mirror, capture_output=True, text=True, check=False)
        for stream, text in ((sys.stdout, proc.stdout), (sys.stderr, proc.stderr)):
            for line in text.splitlines(keepends=True):
                stream.write(_PATH_AT_LINE_START.sub(lambda m: real_path(m.group(1), mirror, dirs), line))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
