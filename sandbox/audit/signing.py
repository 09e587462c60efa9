"""Ed25519 keys and the exact bytes a checkpoint signature covers.

The signed message is a few lines of text (not JSON) so a reviewer can rebuild it by hand
from ``docs/audit.md``; the first line names the format so a signature made for anything
else can never be replayed as a checkpoint.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sandbox.errors import AlreadyExists, InvalidInput, NotFound

CHECKPOINT_FORMAT = "sandbox-audit-checkpoint/v1"
CHECKPOINT_FIELDS = ("size", "root", "time", "key_id", "signature")


def checkpoint_message(size: int, root: str, time: str) -> bytes:
    return f"{CHECKPOINT_FORMAT}\n{size}\n{root}\n{time}\n".encode("ascii")


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode``; O_EXCL makes refusing to overwrite race-free."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # the umask may have narrowed it


def create_keypair(private_path: Path, public_path: Path) -> None:
    for path in (private_path, public_path):
        if path.exists():
            raise AlreadyExists(
                f"audit signing key file {path} already exists",
                "keep the existing key (checkpoints signed by it must stay verifiable) "
                "or move it away first",
            )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, public_pem(key.public_key()), 0o644)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 key from a PEM (PKCS#8) file or a file of its 32 raw bytes."""
    if not path.exists():
        raise NotFound(f"no audit signing key at {path}", "run `sandbox init` to create one")
    data = path.read_bytes()
    try:
        key = (
            serialization.load_pem_private_key(data, password=None)
            if data.lstrip().startswith(b"-----BEGIN")
            else Ed25519PrivateKey.from_private_bytes(data)
        )
    except ValueError as e:
        raise InvalidInput(f"{path} is not an Ed25519 private key", "restore the key file") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an Ed25519 private key", "restore the key file")
    return key


def sign_checkpoint(key: Ed25519PrivateKey, size: int, root: str, time: str) -> dict[str, Any]:
    signature = key.sign(checkpoint_message(size, root, time)).hex()
    return {"size": size, "root": root, "time": time, "key_id": key_id(key.public_key()),
            "signature": signature}


def signature_valid(public_key: Ed25519PublicKey, checkpoint: dict[str, Any]) -> bool:
    try:
        public_key.verify(
            bytes.fromhex(checkpoint["signature"]),
            checkpoint_message(checkpoint["size"], checkpoint["root"], checkpoint["time"]),
        )
    except (InvalidSignature, ValueError, UnicodeEncodeError):
        return False
    return True
