"""The append-only, verifiable audit log: RFC 6962 Merkle tree with Ed25519-signed checkpoints."""
from sandbox.audit.log import AuditLog
from sandbox.audit.verify import VerifyReport

__all__ = ["AuditLog", "VerifyReport"]
