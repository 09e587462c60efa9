"""The vault: datasets at rest, as Parquet encrypted with AES-256-GCM under envelope keys.

One file per dataset version, ``<root>/<dataset>/<version>.sbx``. The version is the SHA-256
of the Parquet bytes (a content hash: the same data always gets the same version). Each
version has its own fresh 256-bit data key; the data key is wrapped (AES-256-GCM) by the
master key, so rotating the master key means re-wrapping small headers, not re-encrypting
data. Both encryptions bind the dataset name and version as associated data, so a file
copied under another name or version fails to decrypt.

File layout (all integers big-endian)::

    magic      4  b"SBXV"
    format     1  1
    key_nonce 12  nonce of the key wrapping
    wrapped   48  data key (32) + GCM tag (16), encrypted under the master key
    data_nonce 12 nonce of the data encryption
    data      ..  Parquet bytes + GCM tag (16), encrypted under the data key

Only the broker calls ``load``. Nothing here logs data, and no error carries a data value.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sandbox.errors import AlreadyExists, InvalidInput, NotFound, NotInitialised, SandboxError
from sandbox.policy import DATASET_NAME_PATTERN

MAGIC = b"SBXV"
FORMAT = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = len(MAGIC) + 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES + NONCE_BYTES
_VERSION_RE = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".sbx"


class VaultError(SandboxError):
    """A vault file cannot be opened: wrong master key, altered or damaged file."""

    code = "vault_error"


@dataclass(frozen=True)
class StoredVersion:
    dataset: str
    version: str  # SHA-256 (hex) of the Parquet bytes
    path: Path
    created: bool = True  # False when this exact version was already in the vault

    @property
    def short(self) -> str:
        return self.version[:12]


def _aad(purpose: bytes, dataset: str, version: str) -> bytes:
    return b"sandbox-vault\x00" + bytes([FORMAT]) + b"\x00" + purpose + b"\x00" + dataset.encode() + b"\x00" + version.encode()


def check_dataset_name(dataset: str) -> str:
    if not isinstance(dataset, str) or not re.match(DATASET_NAME_PATTERN, dataset):
        raise InvalidInput(
            f"{dataset!r} is not a valid dataset name",
            "use lower-case letters, digits, '_' and '-', starting with a letter (at most 64)",
        )
    return dataset


def check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise InvalidInput(
            "a dataset version is the 64-character hex SHA-256 of its content",
            "copy the full version from `sandbox dataset show`",
        )
    return version


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename), mode 0600."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=path.parent)  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Vault:
    def __init__(self, root: Path, master_key: Path) -> None:
        self.root = Path(root)
        self.master_key_path = Path(master_key)

    # -- master key ----------------------------------------------------------------------

    @staticmethod
    def create_master_key(path: Path) -> None:
        """32 random bytes in a new file, mode 0600; never overwrites an existing key."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise AlreadyExists(
                f"a master key already exists at {path}",
                "keep it: every dataset in the vault is encrypted under it; remove it only to destroy the vault",
            ) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(path, 0o600)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _master(self) -> AESGCM:
        try:
            key = self.master_key_path.read_bytes()
        except FileNotFoundError:
            raise NotInitialised(
                f"no master key at {self.master_key_path}",
                "run `sandbox init` first, or point --home at the home that holds the vault",
            ) from None
        if len(key) != KEY_BYTES:
            raise VaultError(
                f"the master key at {self.master_key_path} is not a 32-byte key",
                "restore the master key from its backup",
            )
        return AESGCM(key)

    # -- paths ---------------------------------------------------------------------------

    def path(self, dataset: str, version: str) -> Path:
        return self.root / check_dataset_name(dataset) / (check_version(version) + SUFFIX)

    def versions(self, dataset: str) -> list[str]:
        folder = self.root / check_dataset_name(dataset)
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*" + SUFFIX) if _VERSION_RE.match(p.stem))

    def exists(self, dataset: str, version: str) -> bool:
        return self.path(dataset, version).exists()

    # -- store / load --------------------------------------------------------------------

    def store(self, dataset: str, frame: pl.DataFrame) -> StoredVersion:
        """Encrypt ``frame`` as a new version of ``dataset`` (a no-op if this content is stored)."""
        check_dataset_name(dataset)
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd", statistics=False)
        plain = buf.getvalue()
        version = hashlib.sha256(plain).hexdigest()
        path = self.path(dataset, version)
        master = self._master()
        if path.exists():
            return StoredVersion(dataset, version, path, created=False)
        data_key = AESGCM.generate_key(bit_length=256)
        key_nonce, data_nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
        wrapped = master.encrypt(key_nonce, data_key, _aad(b"key", dataset, version))
        sealed = AESGCM(data_key).encrypt(data_nonce, plain, _aad(b"data", dataset, version))
        del plain, buf
        blob = MAGIC + bytes([FORMAT]) + key_nonce + wrapped + data_nonce + sealed
        for folder in (self.root, path.parent):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(path, blob)
        return StoredVersion(dataset, version, path, created=True)

    def load(self, dataset: str, version: str) -> pl.DataFrame:
        """Decrypt one version (only the broker calls this); ``VaultError`` if it cannot be trusted."""
        path = self.path(dataset, version)
        label = f"{dataset} version {version[:12]}"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(
                f"the vault holds no {label}",
                "list the dataset's versions with `sandbox dataset show`, or add it again",
            ) from None
        master = self._master()
        if len(blob) < _HEADER + TAG_BYTES or blob[:4] != MAGIC:
            raise VaultError(f"the vault file of {label} is not a vault file or is truncated",
                             "restore it from a backup, or add the dataset again")
        if blob[4] != FORMAT:
            raise VaultError(f"the vault file of {label} has unknown format {blob[4]}",
                             "upgrade the sandbox to a version that reads it")
        at = 5
        key_nonce = blob[at:at + NONCE_BYTES]
        at += NONCE_BYTES
        wrapped = blob[at:at + KEY_BYTES + TAG_BYTES]
        at += KEY_BYTES + TAG_BYTES
        data_nonce = blob[at:at + NONCE_BYTES]
        at += NONCE_BYTES
        try:
            data_key = master.decrypt(key_nonce, wrapped, _aad(b"key", dataset, version))
        except InvalidTag:
            raise VaultError(
                f"the master key cannot unwrap the data key of {label}",
                "this is the wrong master key for this vault, or the file's header was altered; "
                "use the home's own keys/master.key, or restore the file from a backup",
            ) from None
        try:
            plain = AESGCM(data_key).decrypt(data_nonce, blob[at:], _aad(b"data", dataset, version))
        except InvalidTag:
            raise VaultError(
                f"the data of {label} fails its integrity check: the file was altered or damaged",
                "restore the file from a backup, or add the dataset again",
            ) from None
        if hashlib.sha256(plain).hexdigest() != version:  # pragma: no cover - GCM already covers this
            raise VaultError(f"the content of {label} does not match its version", "add the dataset again")
        return pl.read_parquet(io.BytesIO(plain))

    def remove(self, dataset: str, version: str) -> None:
        """Delete one version's file (used to undo a store whose registration failed)."""
        self.path(dataset, version).unlink(missing_ok=True)
