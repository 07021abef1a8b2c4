"""ocirun conformance suite: grades any runc-compatible runtime against OCI runtime-spec v1.3.0.

Run with ``python -m conformance --runtime PATH``; see conformance/README.md.
"""
