"""WorkLens: self-hosted activity and endpoint monitoring."""

__version__ = "0.1.0"
