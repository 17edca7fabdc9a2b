"""The installed build and its import-time checks: fastrnn records the torch it was built
against, and `import fastrnn` with another torch, or with an extension that fails to load,
raises ImportError saying which torch it was built against and how to rebuild. (A wheel built and
installed into a fresh environment: .ci/wheel-install.)"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastrnn

INSTALLED = Path(fastrnn.__file__).resolve().parent
REBUILD = "pip install --no-build-isolation --no-deps --force-reinstall ."


def test_build_records_the_torch_it_runs_with():
    from fastrnn import _build_info
    assert _build_info.TORCH_VERSION == torch.__version__


def test_pyproject_declares_the_licence():
    import importlib.metadata as md
    assert md.metadata("fastrnn")["License-Expression"] == "BSD-3-Clause"


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the installed package in tmp_path/site (first on the path in import_error)."""
    site = tmp_path / "site"
    shutil.copytree(INSTALLED, site / "fastrnn", ignore=shutil.ignore_patterns("__pycache__"))
    return site / "fastrnn"


def import_error(package: Path) -> str:
    """The last line of stderr of `import fastrnn` from ``package`` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", "import fastrnn"], capture_output=True,
                          text=True, timeout=120, cwd=package.parent.parent,
                          env={"PYTHONPATH": str(package.parent), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0, "import fastrnn succeeded"
    return proc.stderr.strip().splitlines()[-1]


def test_import_with_another_torch_says_what_to_rebuild(package_copy):
    (package_copy / "_build_info.py").write_text('TORCH_VERSION = "2.0.0+cpu"\n')
    assert import_error(package_copy) == (
        f"ImportError: fastrnn was built against torch 2.0.0+cpu, but torch {torch.__version__} "
        f"is installed; rebuild fastrnn against the torch installed now, from its source tree: "
        f"`pip install scikit-build-core pybind11 ninja cmake scipy-openblas32`, then `{REBUILD}`")


def test_extension_that_fails_to_load_says_what_to_rebuild(package_copy):
    [extension] = package_copy.glob("_C.*")
    extension.write_bytes(b"not a shared library")
    message = import_error(package_copy)
    assert message.startswith("ImportError: fastrnn's extension (fastrnn._C) failed to load: ")
    assert f"built against torch {torch.__version__}" in message and REBUILD in message


def test_import_without_a_build_says_how_to_install(package_copy):
    (package_copy / "_build_info.py").unlink()
    message = import_error(package_copy)
    assert message.startswith("ImportError: fastrnn is not built here") and \
        "pip install --no-build-isolation ." in message


def test_build_without_a_requirement_says_what_to_install(tmp_path):
    """CMake's configure step in an environment where scipy-openblas32 cannot be imported (a
    stand-in package that raises ImportError, first on the path) fails with one line saying what
    to install, not a Python traceback."""
    pybind11 = pytest.importorskip("pybind11")
    cmake = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")
    root = Path(__file__).resolve().parent.parent
    if cmake is None or not (root / "CMakeLists.txt").exists():
        pytest.skip("needs cmake and the source tree")
    hidden = tmp_path / "hide" / "scipy_openblas32"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError(\"No module named 'scipy_openblas32'\")")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hide")}
    run = subprocess.run([cmake, "-S", str(root), "-B", str(tmp_path / "build"),
                          f"-DPython_EXECUTABLE={sys.executable}",
                          f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"],
                         env=env, capture_output=True, text=True)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "fastrnn needs scipy-openblas32 to build: pip install scipy-openblas32\n" in output, \
        output
    assert "Traceback" not in output, output
