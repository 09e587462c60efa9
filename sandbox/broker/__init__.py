"""The broker: answers DP queries about datasets (query language, OpenDP engine, service)."""
