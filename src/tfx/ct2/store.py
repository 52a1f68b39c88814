"""CTranslate2's converted copies, beside the hub cache and never inside its snapshots:
$HF_HOME/ctranslate2/<owner>--<name>--<commit>--<ctranslate2 version>--<quantization>/.

The store itself (lock, temporary folder renamed into place when complete, listing and removal) is
tfx.copies, shared with the onnx backend; this module names ct2's part of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tfx import copies
from tfx.copies import Converted, note, source_key  # noqa: F401 - re-exported: the ct2 store's API

META = copies.KINDS["ct2"][1]


def root() -> Path:
    return copies.root("ct2")


def folder(repo_id: str, snapshot: Path, version: str, quantization: str) -> Path:
    return copies.folder("ct2", repo_id, snapshot, version, quantization)


def complete(path: Path) -> bool:
    return copies.complete(path, "ct2")


def ensure(path: Path, meta: dict, convert: Callable[[Path], None]) -> Path:
    """The converted copy at `path`, converting it with convert(tmp_dir) first if it is not complete."""
    return copies.ensure(path, meta, convert, "ct2", "CTranslate2")


def converted(repo_ids: set[str] | None = None) -> list[Converted]:
    """The complete CTranslate2 copies (of these repositories, case-insensitive, when given)."""
    return copies.converted(repo_ids, ("ct2",), root())


def remove(found: list[Converted]) -> int:
    """Delete these copies (real folders directly inside their root only); the bytes freed."""
    return copies.remove(found)
