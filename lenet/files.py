"""Files on disk: the one atomic write, the checks that a path names a regular file, OS errors in words, and file
names made printable.

Every file lenet writes (checkpoints, config.json, metrics.json, exported models) goes through
`atomic_write`: the bytes land in a temp file beside the target, are flushed to disk, and only then
renamed over it, so a crash, Ctrl+C or a full disk never leaves half a file under the real name.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from lenet.errors import LenetError


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a temp file beside `path`, fsync it, then rename it to `path`.

    A full disk raises LenetError naming the folder; the previous file at `path`, if any, is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if is_disk_full(error):
            raise LenetError(f"the disk holding {path.parent} is full, so {path.name} was not written "
                             "(files written before it are intact): free some space and try again.") from None
        raise
    return path


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (an OSError, or torch's RuntimeError from its zip writer) means no space was left."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    # torch.save reports a failed write as "[enforce fail at inline_container.cc] unexpected pos ..."
    return isinstance(error, RuntimeError) and ("unexpected pos" in str(error) or "No space left" in str(error))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON, atomically."""
    text = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    return atomic_write(path, lambda file: file.write(text))


def require_regular_file(path: str | os.PathLike, what: str = "file", hint: str = "check the path") -> Path:
    """`path` if it names a regular file (symlinks followed); else LenetError with the right reason.

    A FIFO would block a reader forever and a device node (/dev/zero) never ends, so both are refused
    before they are opened.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise LenetError(f"{path} is a broken symbolic link (its target does not exist): {hint}.") from None
        raise LenetError(f"{path} does not exist: {hint}.") from None
    except OSError as error:
        raise LenetError(explain_os_error(path, error, what, hint)) from None
    if stat.S_ISDIR(mode):
        raise LenetError(f"{path} is a folder, not a {what}: {hint}.")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise LenetError(f"{path} is {kind}, not a {what}: pass a regular file.")
    return path


def explain_os_error(path: Path, error: OSError, what: str = "file", hint: str = "check the path") -> str:
    """One sentence for an OS error about `path`: what went wrong and what to do."""
    reasons = {
        errno.ENAMETOOLONG: "has a name longer than the file system allows: rename it or use a shorter path",
        errno.EACCES: "cannot be used (permission denied): check its permissions",
        errno.EPERM: "cannot be used (operation not permitted): check its permissions",
        errno.ENOTDIR: "is not a path to a file (a part of it is a file, not a folder): check the path",
        errno.ELOOP: f"is a symbolic link loop: point it at a real {what}",
        errno.EIO: "could not be read (the disk reported an I/O error): copy it elsewhere or check the disk",
    }
    return f"{path} {reasons.get(error.errno, f'cannot be used ({error.strerror or error}): {hint}')}."


def checked_path(path: str | os.PathLike, what: str = "file", missing: str | None = None,
                 hint: str = "check the path", follow_symlinks: bool = True) -> Path:
    """`path` as a Path once the OS has answered about it without an error: a name too long, a path through a
    file, a denied folder or an I/O error become one LenetError sentence. A missing path is fine (the caller
    decides) unless `missing` is given: then it is the LenetError's sentence."""
    path = Path(path)
    try:
        path.stat(follow_symlinks=follow_symlinks)
    except (FileNotFoundError, NotADirectoryError) as error:
        if missing is not None and isinstance(error, FileNotFoundError):
            raise LenetError(missing) from None
        if missing is not None:
            raise LenetError(explain_os_error(path, error, what, hint)) from None
    except OSError as error:
        raise LenetError(explain_os_error(path, error, what, hint)) from None
    return path


def printable(text: str) -> str:
    """`text` safe to print and to encode as UTF-8 JSON: undecodable bytes of a file name become \\xNN."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
