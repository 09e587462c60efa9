"""The append-only, verifiable audit log: RFC 6962 Merkle tree with Ed25519-signed checkpoints."""
