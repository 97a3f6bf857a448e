"""Errors a user can act on. Each carries the process exit code the CLI reports for it.

1 stays reserved for crashes (bugs), so schedulers can tell "fix your data" from "fix the tool".
"""


class DefectopsError(Exception):
    """Bad input or settings: the message names the file/field and what was expected."""

    exit_code = 2


class DataInvalidError(DefectopsError):
    """The data breaks the contract; the pipeline stops before training on it."""

    exit_code = 3


class RefusedError(DefectopsError):
    """An action the rules forbid (four-eyes, tampered artefact, no approved model)."""

    exit_code = 4


class RegistryError(RefusedError):
    """A registry action is not allowed or refers to something that does not exist."""
