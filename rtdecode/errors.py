"""The exception hierarchy. Every message says what went wrong and what the user can do about it."""


class RtdecodeError(Exception):
    """Base class of every error rtdecode raises on purpose."""


class ConfigError(RtdecodeError):
    """A configuration value or command-line option is invalid."""


class DatasetError(RtdecodeError):
    """A dataset on disk is missing files or holds arrays of the wrong shape."""


class ModelError(RtdecodeError):
    """A model directory is missing, damaged, or disagrees with its card."""


class WireError(RtdecodeError):
    """A message does not follow the rtframe v1 wire format (docs/design.md 3.4).

    `reason` is one of the fixed rejection reasons of rtdecode.sources.rejects (never sender text),
    under which the receiver counts the message."""

    def __init__(self, message: str = "", reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason


class StageError(RtdecodeError):
    """A pipeline stage got input it cannot process, or the stage graph does not fit together."""


class RoiError(RtdecodeError):
    """ROI definitions are invalid (empty footprints, pixels outside the frame)."""


class RecordError(RtdecodeError):
    """A session folder cannot be written or read."""


class DependencyError(RtdecodeError):
    """An optional dependency (an extra of pyproject.toml) is not installed."""
