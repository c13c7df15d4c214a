"""The function's source as a Pulumi archive, named by a hash of its content.

The bucket object's name carries the hash, so changing a file in the source
folder uploads a new object and redeploys the function, while an unchanged
folder keeps the same name and nothing is replaced. Pulumi's own archive
diffing cannot give that: the function only sees the object's name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi

# Byte-code caches and tool state differ between machines; shipping or hashing
# them would redeploy an unchanged function.
_IGNORED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "venv"})
_IGNORED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class SourceArchive:
    archive: pulumi.AssetArchive
    content_hash: str
    files: tuple[str, ...]

    @property
    def object_name(self) -> str:
        return f"function-source-{self.content_hash[:20]}.zip"


def source_files(source_dir: Path) -> list[Path]:
    """The files that make up the function, sorted so the hash is deterministic."""
    files = []
    for path in source_dir.rglob("*"):
        relative = path.relative_to(source_dir)
        if any(part in _IGNORED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(_IGNORED_SUFFIXES):
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(source_dir).as_posix())


def content_hash(source_dir: Path) -> str:
    """SHA-256 over every file's relative path and bytes.

    Paths are part of the hash so renaming a file counts as a change; the
    separators keep ("ab", "c") and ("a", "bc") apart.
    """
    digest = hashlib.sha256()
    for path in source_files(source_dir):
        digest.update(path.relative_to(source_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def build_source_archive(source_dir: Path) -> SourceArchive:
    """An archive of ``source_dir`` (files at its root, as Cloud Functions expects)."""
    files = source_files(source_dir)
    if not files:
        raise ValueError(f"the function source folder {str(source_dir)!r} has no files")
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {
        path.relative_to(source_dir).as_posix(): pulumi.FileAsset(str(path)) for path in files
    }
    return SourceArchive(
        archive=pulumi.AssetArchive(assets),
        content_hash=content_hash(source_dir),
        files=tuple(assets),
    )
