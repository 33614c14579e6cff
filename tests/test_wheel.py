"""An installed bmpipe works anywhere: a wheel built from this tree, installed into a new virtual environment
outside it, runs the demo with the models it carries (the way ``docker/Dockerfile`` installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_package_of_the_tree_is_installed() -> None:
    """A sub-package left out of pyproject's explicit list would be missing from every regular install."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bmpipe").rglob("__init__.py")}
    found |= {"bmpipe.flows", "bmpipe.shipped_models"}
    assert found == listed


def _run(*argv: str | Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{argv}: {done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_runs_the_demo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels,
         REPO, cwd=tmp_path)
    wheel = next(wheels.glob("bmpipe-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"bmpipe/shipped_models/classifier.safetensors", "bmpipe/shipped_models/manifest.json",
            "bmpipe/flows/batch.py", "bmpipe/data/criteria.yaml"} <= names
    assert not any(n.startswith("flows/") for n in names)  # no generic top-level package to collide with

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    # The dependencies (torch and the rest, gigabytes) are this environment's, added as a plain path: the
    # .pth files there (this checkout's editable install among them) are not run, so bmpipe is the wheel's.
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BMPIPE_MODELS")}

    where = _run(python, "-c", "import bmpipe.flows.batch as b; from bmpipe.nn.weights import default_models_dir as d; "
                 "print(b.__file__); print(d())", cwd=tmp_path, env=env).stdout.split()
    assert all(line.startswith(str(venv)) for line in where), where

    _run(venv / "bin" / "bmpipe", "demo", "--out", tmp_path / "demo", cwd=tmp_path, env=env, timeout=1200)
    reports = list((tmp_path / "demo").rglob("report.html"))
    assert reports and "Blast" in reports[0].read_text("utf-8")
