"""What mattekit does with errors, in one place (docs/errors.md).

- :class:`MattekitError` is a problem with the user's input, files or setup: the CLI prints its one-line
  message and exits 2 (or, for one item of a batch, lists it in the failures table and goes on).
- The operating system's refusals (permissions, missing folders, a full disk, a folder where a file was
  expected) and running out of memory are the user's problem too: :func:`describe` turns them into the
  same kind of line, and :func:`user_errors` raises them as a :class:`MattekitError` naming the path.
- Anything else is a bug: outside a batch the CLI shows its traceback and asks for a report; inside a
  batch the item is listed as failed with the exception's type (:func:`describe`) and the batch goes on.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

#: Exit statuses of the ``mattekit`` command (docs/errors.md).
EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USER_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: Printed under the traceback of a bug.
BUG_NOTE = "this is a bug in mattekit: please report it with the command you ran and the traceback above"


class MattekitError(Exception):
    """A problem with the user's input, files or setup (never a bug in mattekit).

    The message must be a single line that names the file or option at fault.
    """


#: Plain words for the OS errors users meet; the rest keep the system's own text (``strerror``).
_OS_WORDS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
}


def os_message(err: OSError, path: str | os.PathLike[str] | None = None, action: str = "") -> str:
    """One line for an OS error: ``cannot write out/a.png: permission denied``."""
    where = path if path is not None else err.filename
    words = _OS_WORDS.get(err.errno or 0) or (err.strerror or "").lower() or str(err) or type(err).__name__
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and where is not None:
        blocker = _file_in_the_way(os.fspath(where))
        if blocker is not None:
            words = f"{blocker} is a file, not a folder"
    subject = f"{action} {where}".strip() if where is not None else action
    return f"{subject}: {words}" if subject else words


def _file_in_the_way(path: str) -> str | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) when it is not a folder."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    return None if os.path.isdir(current) else current


def printable(text: str) -> str:
    """``text`` with control characters (newlines, terminal escapes in a crafted file name) shown as
    escapes, so that a message stays on one line and cannot drive the terminal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def describe(err: BaseException) -> str:
    """The one-line reason shown for a failure of any kind (a batch item's row, an error line)."""
    return printable(_describe(err))


def _describe(err: BaseException) -> str:
    if isinstance(err, MattekitError):
        return str(err).strip()  # one line by contract: a line break in it comes from a file name
    if isinstance(err, MemoryError):
        detail = _one_line(str(err))
        return "out of memory" + (f" ({detail})" if detail else "") + "; try a smaller --max-memory or image"
    if isinstance(err, OSError):
        return os_message(err)
    text = _one_line(str(err))
    return f"{type(err).__name__}{': ' + text if text else ''} (a bug in mattekit? please report it)"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def is_user_error(err: BaseException) -> bool:
    """True for what :func:`describe` words as the user's problem (no traceback, exit 2)."""
    return isinstance(err, (MattekitError, OSError, MemoryError))


@contextmanager
def user_errors(action: str, path: str | os.PathLike[str]) -> Iterator[None]:
    """Raise the OS's refusals inside the block as one-line :class:`MattekitError` naming ``path``."""
    try:
        yield
    except MattekitError:
        raise
    except OSError as err:
        raise MattekitError(os_message(err, err.filename or path, action)) from None
