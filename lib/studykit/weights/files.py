"""Checkpoint files and the manifest that proves them: each file's size and sha256 in `studykit-manifest.json`;
a cached checkpoint is reused only when its files still match it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "studykit-manifest.json"


class WeightsError(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("STUDYKIT_CACHE", Path.home() / ".cache" / "studykit")).expanduser()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_table(model_dir: Path) -> list[dict]:
    rows = []
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and p.name != MANIFEST and ".cache" not in p.parts[len(model_dir.parts):]:
            rows.append({"file": str(p.relative_to(model_dir)), "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    return rows


def write_manifest(model_dir: Path, **meta) -> dict:
    manifest = {**meta, "files": file_table(model_dir)}
    tmp = model_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    tmp.replace(model_dir / MANIFEST)
    return manifest


def read_manifest(model_dir: Path) -> dict | None:
    try:
        return json.loads((Path(model_dir) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def verify(model_dir: Path) -> tuple[bool, str]:
    """(intact, reason). Intact means every file the manifest lists is there with the same sha256."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if manifest is None:
        return False, f"{model_dir / MANIFEST} missing or unreadable"
    for row in manifest.get("files", []):
        p = model_dir / row["file"]
        if not p.is_file():
            return False, f"{row['file']} missing"
        if p.stat().st_size != row["bytes"] or sha256_file(p) != row["sha256"]:
            return False, f"{row['file']} changed (sha256 differs from the manifest)"
    return True, "all files match the manifest"


def weight_bytes(model_dir: Path) -> int:
    """Bytes of the weight files proper, for the roofline (safetensors, else .bin)."""
    model_dir = Path(model_dir)
    files = list(model_dir.glob("*.safetensors")) or list(model_dir.glob("*.bin"))
    return sum(p.stat().st_size for p in files)
