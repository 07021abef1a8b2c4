"""Conformance tests, one module per spec area; each function is registered
with ``conformance.registry.conformance_test``."""
