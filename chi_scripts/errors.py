"""The two kinds of failure the CLI tells apart: bad input (exit 2) and the cloud saying no (exit 1)."""


class SpecError(Exception):
    """The spec, an option or the environment is wrong; nothing was sent to the cloud. Exit code 2."""

    exit_code = 2


class CloudError(Exception):
    """Chameleon refused or failed something; the message carries the cloud's own reason. Exit code 1."""

    exit_code = 1
