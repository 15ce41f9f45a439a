"""``hanzo backup`` / ``hanzo restore``: a consistent online copy of a stack's state dir.

Everything that holds state lives in the state dir: the sidecar's SQLite database (keys as
HMAC digests, audit, usage) and its secrets (``key_hash_secret``: without it no stored key
verifies again), Casdoor's SQLite database, secrets and JWT signing key (without them no
issued JWT verifies again), the memory data, the gateway's quota counters, the identity
assertion key pair and the seed passwords. Run files (pids, logs, rendered configs,
``stack.json``) are not state: ``hanzo up`` writes them afresh for the restored dir.

Consistent while the stack serves traffic:

- every SQLite database (found by its header, wherever it sits) goes through SQLite's
  online backup API, which copies one transactionally consistent snapshot even while other
  processes write (WAL or not);
- a LanceDB dataset is copied manifests first (``_versions``), then its data files: Lance
  never rewrites a data file, so every manifest copied names only files that the later
  copy finds (a compaction's cleanup between the two copies is the one hazard; the copy
  then fails loudly rather than silently);
- other files (secrets, keys, the Casdoor port that fixes its issuer) are copied as is.

The backup is private: directories 0700, files 0600, and ``manifest.json`` lists every
file with its size and SHA-256, which ``restore`` checks before it writes anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

from pydantic import BaseModel

from hanzo_stack.production import read_profile

MANIFEST = "manifest.json"
SQLITE_HEADER = b"SQLite format 3\x00"
#: run files, not state: rewritten by ``hanzo up`` (paths and ports of the old dir)
SKIPPED_DIRS = {"run", "logs", "no-lsof"}
SKIPPED_NAMES = {"stack.json", "hanzo.toml", "casdoor.pid", "init_data.json"}
SKIPPED_SUFFIXES = (".pid", ".log", "-wal", "-shm", "-journal", ".sock")


class BackupError(RuntimeError):
    """The backup or restore cannot be made as asked; the message says why."""


class BackupFile(BaseModel):
    path: str
    size: int
    sha256: str
    how: str  # "sqlite-backup", "lance", "copy"


class Manifest(BaseModel):
    created: str
    source: str
    files: list[BackupFile]


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_HEADER
    except OSError:
        return False


def _skipped(relative: Path) -> bool:
    name = relative.name
    return (
        any(part in SKIPPED_DIRS for part in relative.parts[:-1])
        or name in SKIPPED_NAMES
        or name.endswith(SKIPPED_SUFFIXES)
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_backup(source: Path, dest: Path) -> None:
    """SQLite's online backup API: one consistent snapshot while writers keep writing."""
    src = sqlite3.connect(source, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


def _copy_file(source: Path, dest: Path) -> None:
    _private_dir(dest.parent)
    shutil.copyfile(source, dest)


def _lance_datasets(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.lance") if p.is_dir() and (p / "_versions").is_dir())


def _copy_lance(dataset: Path, dest: Path) -> None:
    """Manifests first, then the immutable data files they name."""
    for sub in ("_versions", "_transactions", "_indices", "_deletions", "data"):
        if not (dataset / sub).exists():
            continue
        for path in sorted((dataset / sub).rglob("*")):
            if path.is_file():
                _copy_file(path, dest / path.relative_to(dataset))


def _production(state_dir: Path) -> bool:
    try:
        return read_profile(state_dir) == "production"
    except ValueError:
        return False


def backup(state_dir: Path, dest: Path) -> Manifest:
    """Copy the state of the stack in ``state_dir`` into ``dest`` (new or empty)."""
    state_dir = state_dir.resolve()
    if not state_dir.is_dir():
        raise BackupError(f"no state dir at {state_dir}")
    if _production(state_dir):
        # its state is in PostgreSQL and Valkey: a file copy of a live PostgreSQL data dir
        # is not a consistent backup, and the keys and memories are not in the state dir
        raise BackupError(
            f"{state_dir} runs the production profile: its data is in PostgreSQL; back up "
            "its databases with pg_dump (hanzo_casdoor, hanzo_sidecar, hanzo_memory) and the "
            "state dir's secrets"
        )
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty; back up into a new directory")
    old_umask = os.umask(0o077)
    try:
        _private_dir(dest)
        lance = _lance_datasets(state_dir)
        for dataset in lance:
            _copy_lance(dataset, dest / dataset.relative_to(state_dir))
        for source in sorted(state_dir.rglob("*")):
            relative = source.relative_to(state_dir)
            if (
                not source.is_file()
                or source.is_symlink()
                or _skipped(relative)
                or any(source.is_relative_to(d) for d in lance)
            ):
                continue
            target = dest / relative
            _private_dir(target.parent)
            if _is_sqlite(source):
                _sqlite_backup(source, target)
            else:
                shutil.copyfile(source, target)
        files = []
        for path in sorted(p for p in dest.rglob("*") if p.is_file()):
            path.chmod(0o600)
            relative = path.relative_to(dest)
            in_lance = any((state_dir / relative).is_relative_to(d) for d in lance)
            how = "lance" if in_lance else "sqlite-backup" if _is_sqlite(path) else "copy"
            files.append(
                BackupFile(
                    path=str(relative), size=path.stat().st_size, sha256=_sha256(path), how=how
                )
            )
        for sub in (p for p in dest.rglob("*") if p.is_dir()):
            sub.chmod(0o700)
        manifest = Manifest(
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            source=str(state_dir),
            files=files,
        )
        (dest / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        (dest / MANIFEST).chmod(0o600)
        return manifest
    finally:
        os.umask(old_umask)


def restore(source: Path, state_dir: Path) -> Manifest:
    """Check the backup in ``source`` against its manifest, then write it into the new
    ``state_dir`` (absent or empty); ``hanzo up --state-dir`` then brings it up."""
    try:
        manifest = Manifest.model_validate_json((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} holds no readable backup manifest: {exc}") from None
    if state_dir.exists() and any(state_dir.iterdir()):
        raise BackupError(f"{state_dir} is not empty; restore into a new state dir")
    for entry in manifest.files:
        path = source / entry.path
        if not path.is_file() or _sha256(path) != entry.sha256:
            raise BackupError(f"{entry.path} is missing or damaged in the backup")
    old_umask = os.umask(0o077)
    try:
        _private_dir(state_dir)
        for entry in manifest.files:
            target = state_dir / entry.path
            if not target.resolve().is_relative_to(state_dir.resolve()):
                raise BackupError(f"{entry.path} points outside the state dir")
            _copy_file(source / entry.path, target)
            target.chmod(0o600)
    finally:
        os.umask(old_umask)
    return manifest


def describe(manifest: Manifest) -> str:
    counts: dict[str, int] = {}
    for entry in manifest.files:
        counts[entry.how] = counts.get(entry.how, 0) + 1
    total = sum(entry.size for entry in manifest.files)
    parts = ", ".join(f"{n} {how}" for how, n in sorted(counts.items()))
    return f"{len(manifest.files)} files ({parts}), {total / 1e6:.1f} MB"
