"""Model weights on disk: safetensors files listed, with their sha256, in ``models/manifest.json``.

Weights load only from safetensors (no pickle, so a weight file cannot run code) and only when their sha256
matches the manifest, so a changed or corrupted file is refused before it reaches a patient's count.
The configuration a model needs to rebuild itself (architecture, classes, µm/px, input size) travels inside
the safetensors metadata, so the file alone says how it was trained to see.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bmpipe.errors import ModelError
from bmpipe.nn.heap import keep_freed_memory

MANIFEST = "manifest.json"
#: What each model's manifest entry must name.
MANIFEST_KEYS = ("file", "version", "sha256")


def default_models_dir() -> Path:
    """``$BMPIPE_MODELS``; else the weights installed with the package (``bmpipe/shipped_models``, package data
    of a regular install); else the checkout's ``models/`` folder (a source tree, or an editable install)."""
    env = os.environ.get("BMPIPE_MODELS")
    if env:
        return Path(env)
    installed = Path(__file__).resolve().parents[1] / "shipped_models"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelRecord:
    """What a report cites about a model: name, version and the sha256 of its weights."""

    name: str
    version: str
    sha256: str
    file: str

    def as_citation(self) -> list[str]:
        return [self.name, self.version, self.sha256]


def save_model(
    module: torch.nn.Module, models_dir: Path, name: str, version: str, config: dict[str, Any]
) -> ModelRecord:
    """Write ``name.safetensors`` with ``config`` as metadata and record its sha256 in the manifest."""
    models_dir.mkdir(parents=True, exist_ok=True)
    file = f"{name}.safetensors"
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    tmp = models_dir / (file + ".part")
    save_file(state, str(tmp), metadata={"config": json.dumps(config), "version": version, "name": name})
    os.chmod(tmp, 0o644)  # readable by the service user a container runs as
    os.replace(tmp, models_dir / file)
    record = ModelRecord(name=name, version=version, sha256=sha256_of(models_dir / file), file=file)
    manifest = _read_manifest(models_dir) if (models_dir / MANIFEST).exists() else {}
    manifest[name] = {"file": file, "version": version, "sha256": record.sha256}
    (models_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", "utf-8")
    return record


def load_weights(models_dir: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], ModelRecord]:
    """State dict, config and record of model ``name``, after checking its sha256 against the manifest.

    Every model a process runs is loaded here, so this is also where the process's allocator is set to keep
    freed memory (:func:`~bmpipe.nn.heap.keep_freed_memory`): ``bmpipe run``, ``detect``, ``classify``,
    the evaluations and Dask workers alike."""
    keep_freed_memory()
    manifest = _read_manifest(models_dir)
    if name not in manifest:
        raise ModelError(models_dir / MANIFEST, f"lists no model named {name!r} (has: {', '.join(manifest)})")
    entry = manifest[name]
    path = models_dir / entry["file"]
    if not path.is_file():
        raise ModelError(path, "model file is missing")
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise ModelError(
            path, f"sha256 {actual[:12]}… does not match the manifest's {entry['sha256'][:12]}…; refusing to load"
        )
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = json.loads(meta["config"])
    except Exception as exc:  # a file that matches its hash but not the format is still a clear error
        raise ModelError(path, f"not a readable safetensors model ({exc})") from exc
    return state, config, ModelRecord(name=name, version=entry["version"], sha256=actual, file=entry["file"])


def _read_manifest(models_dir: Path) -> dict[str, dict[str, str]]:
    path = models_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ModelError(path, "models manifest is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(path, f"models manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelError(path, f"models manifest must be an object of model name → entry, not a {type(manifest).__name__}")
    for name, entry in manifest.items():
        missing = [key for key in MANIFEST_KEYS if not isinstance(entry, dict) or not isinstance(entry.get(key), str)]
        if missing:
            raise ModelError(path, f"entry {name!r} has no {', '.join(missing)} (each entry needs "
                                   f"{', '.join(MANIFEST_KEYS)})")
        if Path(entry["file"]).name != entry["file"] or entry["file"] in ("", ".", ".."):
            raise ModelError(path, f"entry {name!r} names file {entry['file']!r}; a model file lies in this folder")
    return manifest
