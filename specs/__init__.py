"""The project's JSON Schemas (runtime-spec v1.3.0), shipped as package data."""
