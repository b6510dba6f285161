"""Run one notebook once in a fresh kernel, with this process's environment, and print its errors as
JSON: ``python -m tests.nbrun PATH``. The workshop test runs several at once, one per seat."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.test_notebooks import _errors


def main(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    missing = [i for i, c in enumerate(nb.cells)
               if c.cell_type == "code" and c.source.strip() and not c.execution_count]
    return _errors(nb) + [f"cells not executed: {missing}"] * bool(missing)


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]).resolve())), flush=True)
