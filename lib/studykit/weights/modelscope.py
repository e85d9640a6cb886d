"""Weights from ModelScope only, by id and pinned revision, into the kit's cache.

The seed study's rule: weights and configuration come from ModelScope, never from Hugging Face or GitHub.
So: ModelScope's own client (`modelscope.snapshot_download`) is the only downloader; the Hugging Face hub
is kept offline while it runs; vLLM is then pointed at the local directory (with VLLM_USE_MODELSCOPE set, so
even a stray id lookup would go to ModelScope).

One directory per (id, revision): `<cache>/modelscope/<owner>/<name>/<revision>/`, with the kit's manifest
(every file's sha256, plus id and revision). A cached directory is reused only if the manifest says the same
id and revision and every file still matches; a directory whose manifest names another revision is refused.
After a download, the files are checked against the listing ModelScope reports for that revision (size, and
sha256 where the hub gives one), so what is on disk is that revision and nothing else.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from studykit.evidence.journal import utc_now
from studykit.weights import files
from studykit.weights.files import WeightsError

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")
_REV_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


def endpoint() -> str:
    """The ModelScope endpoint the client will use (MODELSCOPE_ENDPOINT, or the deprecated MODELSCOPE_DOMAIN)."""
    if os.environ.get("MODELSCOPE_ENDPOINT"):
        return os.environ["MODELSCOPE_ENDPOINT"]
    domain = os.environ.get("MODELSCOPE_DOMAIN")
    if domain:
        return domain if "://" in domain else f"https://{domain}"
    return DEFAULT_ENDPOINT


def cache_dir_for(model_id: str, revision: str) -> Path:
    if not _ID_RE.match(model_id or ""):
        raise WeightsError(f"ModelScope model id {model_id!r} is not of the form owner/name")
    if not revision or not _REV_RE.match(revision):
        raise WeightsError(f"ModelScope revision {revision!r} is not a branch, tag or commit id "
                           "(letters, digits, '.', '_', '-')")
    return files.cache_root() / "modelscope" / model_id / revision


def download_command(model_id: str, revision: str, local_dir: Path) -> str:
    """The modelscope CLI command equivalent to what the kit does, for the record and for doing it by hand."""
    return shlex.join(["modelscope", "download", "--model", model_id, "--revision", revision,
                       "--local_dir", str(local_dir)])


@contextmanager
def _hf_hub_offline():
    # ModelScope's client does not use the HF hub; this makes sure nothing reached through it (transformers
    # helpers, remote-code imports) can fetch from huggingface.co during the download either.
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_cached(model_dir: Path, model_id: str, revision: str) -> tuple[bool, str]:
    """(usable, reason) for an existing directory. Raises WeightsError if it holds another id or revision."""
    manifest = files.read_manifest(model_dir)
    if manifest is None:
        return False, "no manifest (an interrupted download?)"
    got_id, got_rev = manifest.get("id"), manifest.get("revision")
    if got_id != model_id or got_rev != revision:
        raise WeightsError(
            f"revision mismatch: {model_dir} holds {got_id}@{got_rev} but the study asks for {model_id}@{revision}. "
            f"Refusing to serve other weights than the pinned revision; remove {model_dir} or fix model.revision.")
    ok, why = files.verify(model_dir)
    return ok, why


def compare_with_listing(model_dir: Path, listing: list[dict]) -> list[str]:
    """Problems between the downloaded files and the hub's listing for the revision ([] = they match).
    listing rows: {"path", "size", "sha256" (may be None)}."""
    on_disk = {row["file"]: row for row in files.file_table(model_dir)}
    problems = []
    for entry in listing:
        path = entry["path"]
        row = on_disk.get(path)
        if row is None:
            problems.append(f"{path}: listed by ModelScope for this revision but not downloaded")
            continue
        if entry.get("size") is not None and int(entry["size"]) != row["bytes"]:
            problems.append(f"{path}: {row['bytes']} bytes on disk, ModelScope lists {entry['size']}")
        if entry.get("sha256") and entry["sha256"].lower() != row["sha256"]:
            problems.append(f"{path}: sha256 {row['sha256'][:12]}… on disk, ModelScope lists {entry['sha256'][:12]}…")
    return problems


def hub_listing(model_id: str, revision: str) -> list[dict]:
    """What ModelScope reports for this revision: every file with its size and sha256."""
    from modelscope_hub.api import HubApi  # the client modelscope.snapshot_download itself delegates to

    files = HubApi(endpoint=endpoint()).list_repo_files(model_id, "model", revision=revision, recursive=True)
    return [{"path": f.path, "size": f.size, "sha256": getattr(f, "sha256", None)}
            for f in files if getattr(f, "type", "blob") != "tree"]


def download(model_id: str, revision: str, commands=None, log=print) -> Path:
    """The checkpoint directory of model_id at revision, downloaded from ModelScope unless already cached."""
    target = cache_dir_for(model_id, revision)
    command = download_command(model_id, revision, target)
    if target.is_dir():
        ok, why = check_cached(target, model_id, revision)
        if ok:
            log(f"modelscope: reusing {target} ({why})")
            if commands is not None:
                commands.note("modelscope download", command, model_dir=str(target), cached=True)
            return target
        log(f"modelscope: downloading again into {target}: {why}")
    t0 = time.monotonic()
    tmp = target.with_name(target.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)  # kept on failure: ModelScope resumes finished files next time
    try:
        from modelscope import snapshot_download

        with _hf_hub_offline():
            snapshot_download(model_id, revision=revision, local_dir=str(tmp))
    except Exception as err:  # noqa: BLE001 - every client failure gets the same explanation
        if not any(tmp.iterdir()):
            tmp.rmdir()
        raise WeightsError(
            f"ModelScope download of {model_id}@{revision} from {endpoint()} failed: {type(err).__name__}: "
            f"{str(err)[:600]}\n"
            f"No other hub was tried: the kit takes weights from ModelScope only. Check the network (or "
            f"MODELSCOPE_ENDPOINT). Offline: let the kit download it where ModelScope is reachable (the first "
            f"stage of any run of this study does), then copy {target} with its {files.MANIFEST} to the "
            f"same place here (STUDYKIT_CACHE moves the cache root).") from None
    listing_checked = False
    try:
        problems = compare_with_listing(tmp, hub_listing(model_id, revision))
        listing_checked = True
    except Exception as err:  # noqa: BLE001 - the download itself worked; record that the cross-check did not
        problems = []
        log(f"modelscope: could not list {model_id}@{revision} to cross-check the files: {err}")
    if problems:
        raise WeightsError(f"downloaded files of {model_id}@{revision} differ from what ModelScope lists for that "
                           "revision:\n  " + "\n  ".join(problems[:20]))
    import modelscope

    files.write_manifest(tmp, source="modelscope", id=model_id, revision=revision, endpoint=endpoint(),
                           command=command, modelscope_version=getattr(modelscope, "__version__", None),
                           hub_listing_checked=listing_checked, downloaded_utc=utc_now(),
                           download_seconds=round(time.monotonic() - t0, 1))
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    log(f"modelscope: {model_id}@{revision} in {target} ({time.monotonic() - t0:.1f} s)")
    if commands is not None:
        commands.note("modelscope download", command, model_dir=str(target), cached=False)
    return target
