"""The vault: round trip, content-hash versions, tampering and wrong keys refused, 0600 files."""
from __future__ import annotations

import stat
from pathlib import Path

import polars as pl
import pytest

from sandbox.errors import AlreadyExists, InvalidInput, NotFound
from sandbox.vault import MAGIC, Vault, VaultError

SECRET = "SECRET-VALUE-d41d8cd9"


def _frame() -> pl.DataFrame:
    return pl.DataFrame({
        "farmer_id": ["ZK1", "ZK2", "ZK3"],
        "name": [SECRET, "b", "c"],
        "income_yuan": [1.5, 2.5, None],
        "age": [30, 40, 50],
        "ok": [True, False, True],
    })


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    Vault.create_master_key(tmp_path / "keys" / "master.key")
    return Vault(tmp_path / "vault", tmp_path / "keys" / "master.key")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_master_key(tmp_path):
    key = tmp_path / "k" / "master.key"
    Vault.create_master_key(key)
    assert len(key.read_bytes()) == 32 and _mode(key) == 0o600
    before = key.read_bytes()
    with pytest.raises(AlreadyExists):
        Vault.create_master_key(key)
    assert key.read_bytes() == before
    other = tmp_path / "k" / "other.key"
    Vault.create_master_key(other)
    assert other.read_bytes() != before


def test_round_trip(vault):
    frame = _frame()
    stored = vault.store("farmers", frame)
    assert stored.path == vault.root / "farmers" / f"{stored.version}.sbx"
    assert len(stored.version) == 64 and stored.short == stored.version[:12]
    assert vault.load("farmers", stored.version).equals(frame)
    assert vault.versions("farmers") == [stored.version]


def test_file_is_encrypted_and_private(vault):
    stored = vault.store("farmers", _frame())
    blob = stored.path.read_bytes()
    assert blob.startswith(MAGIC)
    assert SECRET.encode() not in blob and b"farmer_id" not in blob and b"PAR1" not in blob
    assert _mode(stored.path) == 0o600
    assert _mode(stored.path.parent) == 0o700
    assert [p.name for p in stored.path.parent.iterdir()] == [stored.path.name]  # no temp file left


def test_version_is_a_stable_content_hash(vault):
    import hashlib
    import io

    a = vault.store("farmers", _frame())
    b = vault.store("farmers", _frame())
    assert a.version == b.version and a.created and not b.created
    buf = io.BytesIO()
    _frame().write_parquet(buf, compression="zstd", statistics=False)
    assert a.version == hashlib.sha256(buf.getvalue()).hexdigest()
    c = vault.store("farmers", _frame().with_columns(pl.col("age") + 1))
    assert c.version != a.version
    assert vault.versions("farmers") == sorted([a.version, c.version])


@pytest.mark.parametrize("where", ["header_key", "wrapped_key", "data_nonce", "data", "tag", "truncate"])
def test_tampering_is_detected(vault, where):
    stored = vault.store("farmers", _frame())
    blob = bytearray(stored.path.read_bytes())
    offsets = {"header_key": 6, "wrapped_key": 20, "data_nonce": 70, "data": 100, "tag": len(blob) - 1}
    if where == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[offsets[where]] ^= 0x01
    stored.path.write_bytes(bytes(blob))
    with pytest.raises(VaultError) as e:
        vault.load("farmers", stored.version)
    assert SECRET not in str(e.value) and e.value.hint


def test_wrong_master_key(vault, tmp_path):
    stored = vault.store("farmers", _frame())
    Vault.create_master_key(tmp_path / "other.key")
    other = Vault(vault.root, tmp_path / "other.key")
    with pytest.raises(VaultError, match="master key cannot unwrap"):
        other.load("farmers", stored.version)


def test_file_bound_to_name_and_version(vault):
    a = vault.store("farmers", _frame())
    b = vault.store("farmers", _frame().head(2))
    (vault.root / "loans").mkdir(mode=0o700)
    moved = vault.root / "loans" / a.path.name
    moved.write_bytes(a.path.read_bytes())
    with pytest.raises(VaultError):
        vault.load("loans", a.version)  # copied under another dataset
    b.path.write_bytes(a.path.read_bytes())
    with pytest.raises(VaultError):
        vault.load("farmers", b.version)  # swapped for another version


def test_missing_and_invalid_names(vault):
    with pytest.raises(NotFound):
        vault.load("farmers", "0" * 64)
    with pytest.raises(InvalidInput):
        vault.store("../etc", _frame())
    with pytest.raises(InvalidInput):
        vault.load("farmers", "../../x")


def test_remove(vault):
    stored = vault.store("farmers", _frame())
    vault.remove("farmers", stored.version)
    assert not stored.path.exists()
