"""Stage kernels over IPC: two studies started at once in one working directory (two pytest-xdist workers, or a
researcher's two terminals) must not share a kernel's sockets. jupyter_client's default puts them at
"kernel-ipc-<n>" in the working directory, first free n, which two starting kernels can both pick."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import papermill as pm

from studykit.runner.execute import KERNEL_NAME, kernel_config


def test_each_kernel_gets_sockets_of_its_own_outside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.getpid())")]
    src = tmp_path / "pid.ipynb"
    nbformat.write(nb, src)
    configs = [kernel_config() for _ in range(4)]
    prefixes = [c.KernelManager.ip for c in configs]
    assert len(set(prefixes)) == 4 and all(os.path.isabs(p) for p in prefixes)

    def run(i: int) -> str:
        out = tmp_path / f"out-{i}.ipynb"
        pm.execute_notebook(str(src), str(out), kernel_name=KERNEL_NAME, progress_bar=False, config=configs[i],
                            start_timeout=600)
        return nbformat.read(out, as_version=4).cells[0].outputs[0]["text"].strip()

    with ThreadPoolExecutor(4) as pool:
        pids = list(pool.map(run, range(4)))
    assert len(set(pids)) == 4  # four kernels, each answered on its own sockets
    assert not list(Path(tmp_path).glob("kernel-ipc-*"))
    # the sockets are cleaned up with their kernel
    assert not [p for prefix in prefixes for p in Path(prefix).parent.glob(Path(prefix).name + "-*")]
