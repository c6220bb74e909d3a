"""Offline OCI images: a small deterministic image writer and the builder for kubelite's images."""
