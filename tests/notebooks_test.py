"""Every notebook in experiments/notebooks runs top to bottom (smoke mode).

``BNNJAX_NOTEBOOK_SMOKE=1`` makes each notebook train a tiny network for a few steps on
a few hundred examples; runs go to a temporary directory. Needs nbformat, nbclient and
ipykernel (the ``test`` extra); without them the test is skipped with that reason.
"""

import glob
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "experiments", "notebooks", "*.ipynb")))
MISSING = [m for m in ("nbformat", "nbclient", "ipykernel")
           if importlib.util.find_spec(m) is None]


def test_notebooks_exist():
  assert NOTEBOOKS, "experiments/notebooks holds no notebook"


@pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING} (pip install "
                    "nbformat nbclient ipykernel, or the package's test extra)")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
  import nbclient
  import nbformat

  nb = nbformat.read(path, as_version=4)
  # Stored without outputs: the notebooks are sources, results come from running them.
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, (
          f"{os.path.basename(path)} is stored with outputs; clear them before "
          "committing (jupyter nbconvert --clear-output --inplace).")
  monkeypatch.setenv("BNNJAX_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("BNNJAX_NOTEBOOK_WORKDIR", str(tmp_path / "runs"))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
  # The kernel inherits the session's environment as tests/conftest.py set it: its
  # XLA flags, and its compile cache, so that it reuses the programs the session
  # compiled and the other way round.
  monkeypatch.setenv("MPLBACKEND", "Agg")
  client = nbclient.NotebookClient(
      nb, timeout=600, kernel_name="python3",
      resources={"metadata": {"path": os.path.dirname(path)}})
  client.execute()
