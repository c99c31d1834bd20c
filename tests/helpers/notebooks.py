"""Execute a notebook of a project copy, as a user would, and return its outputs."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.project import project_env


def run_notebook(repo: Path, rel: str, timeout: int = 600) -> list:
    """Run `repo/rel` top to bottom; every code cell's outputs, in order.

    The kernel starts in the notebook's directory, imports this copy's code (`repo/src`) and
    runs with the tests' clean environment.
    """
    import nbformat
    from nbclient import NotebookClient

    path = repo / rel
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute(env={**project_env(), "PYTHONPATH": str(repo / "src")})
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
