"""The wheel must contain every module: the editable install used by the tests would hide a gap."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_package_directory_is_declared() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    dirs = {pkg: ROOT / path for pkg, path in cfg["package-dir"].items()}
    found = set()
    for pkg, base in dirs.items():
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found <= declared, f"packages missing from pyproject.toml: {sorted(found - declared)}"
    # every declared package maps to a real directory
    for pkg in declared:
        head = max((p for p in dirs if pkg == p or pkg.startswith(p + ".")), key=len)
        path = dirs[head].joinpath(*pkg[len(head) :].strip(".").split(".")) if pkg != head else dirs[head]
        assert (path / "__init__.py").is_file(), pkg


def test_package_data_globs_match_files() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = cfg["package-dir"]
    for pkg, globs in cfg["package-data"].items():
        head = max((p for p in dirs if pkg == p or pkg.startswith(p + ".")), key=len)  # a subpackage's folder
        folder = ROOT / dirs[head] / Path(*pkg[len(head) :].strip(".").split(".")) if pkg != head else ROOT / dirs[pkg]
        for pattern in globs:
            assert list(folder.glob(pattern)), f"{pkg}: {pattern} matches nothing"
