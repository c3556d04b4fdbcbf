"""The exception type for user errors: the CLI prints its message on one line and exits non-zero."""


class MattekitError(Exception):
    """A problem with the user's input, files or setup (never a bug in mattekit).

    The message must be a single line that names the file or option at fault.
    """
