"""Exceptions that carry a message a user can act on.

Every error dubprep raises on purpose derives from :class:`DubprepError`; the
CLI prints its message on one line and exits non-zero. Anything else is a bug.
"""


class DubprepError(Exception):
    """Base class: the message names the file and says what to do."""


class ConfigError(DubprepError):
    """The project file or a command-line override is invalid."""


class MediaError(DubprepError):
    """The input media cannot be used (missing, corrupt, no audio, bad layout)."""


class ToolMissingError(DubprepError):
    """An external tool (ffmpeg, ffprobe) cannot be found or does not run."""


class ModelError(DubprepError):
    """A model's weights are missing, corrupted or of the wrong kind."""


class LockError(DubprepError):
    """Another run holds the output folder."""


class StageError(DubprepError):
    """A stage could not produce its outputs."""
