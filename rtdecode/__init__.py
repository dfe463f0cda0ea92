"""rtdecode: real-time reconstruction of what a mouse sees, from its visual cortex, during the experiment."""

__version__ = "0.1.0"
