"""Error kinds the CLI maps to exit codes: 1 for a failure, 2 for bad input or configuration."""


class TrainingError(Exception):
    """A step failed (exit code 1)."""

    exit_code = 1


class BadInputError(TrainingError):
    """The user's input, data or configuration is unusable (exit code 2)."""

    exit_code = 2


class ConfigError(BadInputError):
    """The configuration file is missing, malformed or has an invalid value."""


class DataError(BadInputError):
    """The data cannot be read or fails validation."""
