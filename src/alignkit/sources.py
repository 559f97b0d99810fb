"""Check where a model (or a data set) comes from before anything slow starts: a local folder that holds a model, or
a hub id that can be reached now.

``check_model_source("/nonexistent", "--model")`` fails at once naming the flag and the path (instead of after a
testbed build or a long hub retry); a hub id with no network says "no network: pass a local folder" at once (one
short connection attempt, or none under ``HF_HUB_OFFLINE=1``). ``check_data_source`` does the same for training data:
a local file or folder, or a hub dataset id (``HF_DATASETS_OFFLINE`` counts as offline too).
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from alignkit.errors import InputFileError, InputPathError, NoNetworkError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_MODEL_FILES = ("config.json", "adapter_config.json")


def _offline(*names: str) -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes")
        for v in names or ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """One TCP connection attempt to the hub (``HF_ENDPOINT`` if set), ``timeout`` seconds at most."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:
        m = re.match(r"^\w+://([^/:]+)(?::(\d+))?", endpoint)
        if m:
            host, port = m.group(1), int(m.group(2) or (443 if endpoint.startswith("https") else 80))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached(hub_id: str, kind: str = "models") -> bool:
    """Whether the hub cache holds this repo already (then offline loading works); ``kind``: models / datasets."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover
        return False
    return (Path(HF_HUB_CACHE) / f"{kind}--{hub_id.replace('/', '--')}").is_dir()


def _check_safetensors(folder: Path, what: str) -> None:
    """Open each ``*.safetensors`` header (cheap): a corrupt or truncated file is named now, not deep in loading."""
    from safetensors import safe_open

    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError derives from Exception only
            raise InputFileError(f"{what}: {f} is not a readable safetensors file ({exc})") from None


def check_model_source(spec: Any, what: str = "--model") -> str:
    """``"local"`` for a folder holding a saved model, ``"hub"`` for a reachable (or cached) hub id, ``"object"``
    for an in-memory model (a local folder's ``*.safetensors`` headers are read: a corrupt file is named);
    otherwise :class:`~alignkit.errors.InputPathError` (a path that does not exist or
    holds no model) or :class:`~alignkit.errors.NoNetworkError` (a hub id with no network), naming ``what``."""
    if not isinstance(spec, (str, os.PathLike)):
        return "object"
    text = os.fspath(spec)
    p = Path(text)
    if p.exists():
        if not p.is_dir():
            raise InputPathError(
                f"{what} {text}: a file, not a model folder (save_pretrained writes a folder)"
            )
        if not any((p / f).is_file() for f in _MODEL_FILES):
            raise InputPathError(f"{what} {text}: the folder holds no saved model (no config.json)")
        _check_safetensors(p, what)
        return "local"
    looks_local = text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1
    if looks_local or not _HUB_ID.match(text):
        raise InputPathError(f"{what} {text} is not a folder (no such path)")
    if _cached(text):
        return "hub"
    if _offline():
        raise NoNetworkError(
            f"{what} {text}: not a local folder, and the hub is off (HF_HUB_OFFLINE): pass a local folder"
        )
    if not hub_reachable():
        raise NoNetworkError(f"{what} {text}: not a local folder and no network: pass a local folder")
    return "hub"


DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")


def looks_like_hub_id(text: str) -> bool:
    """``org/name`` or ``name`` that is not a path and not a data file name (``train.jsonl``)."""
    looks_local = text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1
    return not looks_local and bool(_HUB_ID.match(text)) and not text.lower().endswith(DATA_SUFFIXES)


def check_data_source(spec: Any, what: str = "--data") -> str:
    """``"local"`` for an existing file or folder, ``"hub"`` for a hub dataset id that is cached or reachable now,
    ``"object"`` for rows in memory; otherwise :class:`~alignkit.errors.InputPathError` (no such file) or
    :class:`~alignkit.errors.NoNetworkError` (a hub id with the hub off or out of reach: at once, not after
    ``datasets``' retries), naming ``what``."""
    if not isinstance(spec, (str, os.PathLike)):
        return "object"
    text = os.fspath(spec)
    if Path(text).exists():
        return "local"
    if not looks_like_hub_id(text):
        raise InputPathError(f"{what} {text}: no such file or folder")
    if _cached(text, "datasets"):
        return "hub"
    if _offline("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        raise NoNetworkError(
            f"{what} {text}: not a local file or folder, and this machine cannot reach the hub (HF_HUB_OFFLINE / "
            "HF_DATASETS_OFFLINE is set): pass a local file or a save_to_disk folder"
        )
    if not hub_reachable():
        raise NoNetworkError(
            f"{what} {text}: not a local file or folder, and this machine cannot reach the hub (no network): "
            "pass a local file or a save_to_disk folder"
        )
    return "hub"
