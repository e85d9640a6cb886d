"""`studykit data fetch PARAMS`: the datasets a study's lm-eval tasks read, from ModelScope at a pinned revision.

Same rules as the weights (modelscope_source): ModelScope's own client is the only downloader, the Hugging
Face hub is kept offline while it runs, one directory per (id, revision) with the kit's manifest (every
file's sha256), a directory holding another revision is refused. The tasks stage then reads these directories
only (its lm-eval runs are offline).
"""

from __future__ import annotations

import shlex
import shutil
import time
from pathlib import Path

from studykit.weights import files
from studykit.weights.modelscope import _hf_hub_offline, endpoint
from studykit.weights.files import WeightsError
from studykit.stages.tasks.data import local_dataset_dir


def download_command(dataset_id: str, revision: str, local_dir: Path) -> str:
    return shlex.join(["modelscope", "download", "--dataset", dataset_id, "--revision", revision,
                       "--local_dir", str(local_dir)])


def _usable(target: Path, dataset_id: str, revision: str) -> tuple[bool, str]:
    manifest = files.read_manifest(target)
    if manifest is None:
        return False, "no manifest (an interrupted download?)"
    if (manifest.get("id"), manifest.get("revision")) != (dataset_id, revision):
        raise WeightsError(f"{target} holds {manifest.get('id')}@{manifest.get('revision')}, not {dataset_id}@"
                           f"{revision}; remove it or fix tasks.datasets")
    return files.verify(target)


def fetch_dataset(data_dir: str | Path, dataset_id: str, revision: str, log=print) -> tuple[Path, str]:
    """(directory, the equivalent modelscope command) of one dataset, downloaded unless already there intact."""
    target = local_dataset_dir(data_dir, dataset_id, revision)
    command = download_command(dataset_id, revision, target)
    if target.is_dir():
        ok, why = _usable(target, dataset_id, revision)
        if ok:
            log(f"modelscope: reusing {target} ({why})")
            return target, command
        log(f"modelscope: downloading again into {target}: {why}")
    tmp = target.with_name(target.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        from modelscope import dataset_snapshot_download

        with _hf_hub_offline():
            dataset_snapshot_download(dataset_id, revision=revision, local_dir=str(tmp))
    except Exception as err:  # noqa: BLE001 - every client failure gets the same explanation
        raise WeightsError(f"ModelScope download of dataset {dataset_id}@{revision} from {endpoint()} failed: "
                           f"{type(err).__name__}: {str(err)[:600]}\nNo other hub was tried. Check the network "
                           f"(or MODELSCOPE_ENDPOINT); offline, copy {target} with its {files.MANIFEST} from a "
                           "machine that fetched it.") from None
    import modelscope

    files.write_manifest(tmp, source="modelscope-dataset", id=dataset_id, revision=revision, endpoint=endpoint(),
                           command=command, modelscope_version=getattr(modelscope, "__version__", None),
                           download_seconds=round(time.monotonic() - t0, 1))
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    log(f"modelscope: {dataset_id}@{revision} in {target} ({time.monotonic() - t0:.1f} s)")
    return target, command


def fetch_study_datasets(study, log=print) -> list[dict]:
    """Every dataset in the study's tasks.datasets: [{"dataset_path", "modelscope_id", "revision", "dir",
    "command"}]. A study without datasets has nothing to fetch (the kit's own tasks ship with it)."""
    p = study.tasks
    if not p.datasets:
        log(f"{study.name}: tasks.datasets is empty; nothing to fetch (the kit's own tasks need no download)")
        return []
    out = []
    for ds in p.datasets:
        path, command = fetch_dataset(p.data_dir, ds.modelscope_id, ds.revision, log=log)
        out.append({"dataset_path": ds.dataset_path, "modelscope_id": ds.modelscope_id, "revision": ds.revision,
                    "dir": str(path), "command": command})
    return out
