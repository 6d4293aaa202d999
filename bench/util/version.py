"""The suite's version, importable without the package's Python API (layers: any module may)."""

__version__ = "0.1.0"
