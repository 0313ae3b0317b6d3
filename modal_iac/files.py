"""Reading the files modaliac is pointed at (specs, states, saved plans, Modal's config), which
are hostile until checked: one way to read them, with one line for each way they can fail;
and one way to write what a command is asked to write (``write_file``).

Only regular files are opened. A folder is named as one, and a pipe or a device is refused
before it is read from or written to: either would wait for the other end for ever. A file
larger than its kind ever is, is refused before it is read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

Fail = Callable[[str, str], Exception]  # (where, problem) -> the error to raise


def joined(error: Callable[[str], Exception]) -> Fail:
    """A ``Fail`` for an error class that takes one line: ``where: problem``."""
    return lambda where, problem: error(f"{where}: {problem}")


def read_bytes(path: Path, shown: str, what: str, limit: int, fail: Fail) -> bytes | None:
    """The bytes of ``path`` (named ``shown`` in errors), or None when there is no such file;
    ``what`` names its kind in errors ("spec file", "state"), ``fail`` makes the error."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except PermissionError:
        raise fail(shown, "permission denied") from None
    except (OSError, ValueError) as exc:
        raise fail(*_unreadable(shown, exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise fail(shown, f"is a directory, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise fail(shown, f"is not a regular file (a pipe or a device), so not a {what}")
    if info.st_size > limit:
        raise fail(shown, f"the file is {info.st_size} bytes; a {what} is at most {size(limit)}")
    try:
        # Non-blocking, then checked again: a file swapped for a pipe since the stat above
        # must not make the open (or the read) wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise fail(shown, f"is not a regular file (a pipe or a device), so not a {what}")
            # st_size can be wrong (a file that grows, /proc): never read past the limit.
            data = handle.read(limit + 1)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise fail(shown, "permission denied") from None
    except OSError as exc:
        raise fail(*_unreadable(shown, exc)) from None
    if len(data) > limit:
        raise fail(shown, f"the file is larger than {size(limit)}, more than a {what} can be")
    return data


def _unreadable(shown: str, exc: OSError | ValueError) -> tuple[str, str]:
    """Where and what for a name the system refuses to look up (too long, a NUL byte)."""
    from .tokens import printable

    if isinstance(exc, ValueError):  # os.stat's "embedded null byte"
        return printable(shown), "the name holds a NUL byte; name the file in printable characters"
    if exc.errno == errno.ENAMETOOLONG:
        problem = (
            "the name is too long for the file system (255 bytes between slashes, 4096 in all)"
        )
        return named(shown), problem
    return shown, f"cannot be read ({_reason(exc)})"


def named(path: str) -> str:
    """A file's name as an error line shows it: printable, and at most 120 characters."""
    from .tokens import printable

    shown = printable(path)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def is_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder (through a link); a name the system refuses to look up
    (too long, a NUL byte) is no folder, where ``Path.is_dir`` raises: reading it says why."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def write_file(path: Path, text: str, what: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: into a new file in the same
    folder, then renamed over it, so a reader never sees half a plan. Only a regular file (or
    none) is replaced, through a symbolic link if ``path`` is one; anything else, a name with
    a control character, a missing folder or a failed write is one line naming ``path``."""
    import tempfile  # here, not at the top: `modaliac --help` imports this module

    from .errors import ModaliacError

    target, mode = _writable(path, what)
    temporary: str | None = None
    try:
        try:
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(temporary, mode)
            os.replace(temporary, target)
            temporary = None  # renamed: nothing left to remove
        finally:  # a failed write or a Ctrl-C leaves no temporary file behind
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
    except OSError as exc:
        raise ModaliacError(f"{path}: cannot write the {what} ({exc.strerror})") from None


def check_writable(path: Path, what: str) -> None:
    """Refuse, before any work, a ``path`` that ``write_file`` would refuse after it."""
    _writable(path, what)


def _writable(path: Path, what: str) -> tuple[Path, int]:
    """The file ``path`` names (through a link) and the mode to give it, or one line."""
    from .errors import ModaliacError
    from .tokens import printable

    shown = str(path)
    if not shown.isprintable():
        raise ModaliacError(
            f"{printable(shown)}: the name holds a control character; name the {what}'s file "
            "in printable characters"
        )
    target = Path(os.path.realpath(path))
    try:
        info = target.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise ModaliacError(f"{shown}: cannot write the {what} ({exc.strerror})") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise ModaliacError(f"{shown}: is a directory; name a file for the {what}")
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise ModaliacError(
            f"{shown}: is not a regular file (a pipe or a device); name a file for the {what}"
        )
    if not target.parent.is_dir():
        raise ModaliacError(f"{shown}: its folder {target.parent} does not exist")
    return target, stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def read_text(path: Path, shown: str, what: str, limit: int, fail: Fail) -> str | None:
    """``read_bytes`` decoded as UTF-8 (one line naming the first bad byte otherwise)."""
    raw = read_bytes(path, shown, what, limit, fail)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(shown, f"byte {exc.start} is not UTF-8; is it a {what}?") from None


def parse_json(text: str, where: str, what: str, fail: Fail) -> Any:
    """JSON text as a value; a broken or absurdly nested document is one line."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise fail(
            where,
            f"the {what} holds the key {exc.shown} twice in one object; each key may appear once",
        ) from None
    except json.JSONDecodeError as exc:
        where = f"{where}:{exc.lineno}:{exc.colno}"
        raise fail(where, f"the {what} is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise fail(where, f"the {what} is nested too deeply to be one") from None
    except ValueError:  # an integer of thousands of digits (Python refuses to convert it)
        raise fail(where, f"the {what} holds a number too long to be one of its values") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        from .tokens import shown

        self.shown = shown(key, 60)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's keys, each once: JSON leaves a repeated key to the reader (Python keeps the
    last, other tools the first), so a document with one means different things to each."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return found


def size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"


def open_own(path: Path, flags: int, what: str, fail: Fail, mode: int = 0o644) -> int:
    """A descriptor on ``path`` opened with ``flags``, only if it is (or is made as) a regular
    file of our own: never through a symbolic link planted there, never waiting on a pipe;
    a link, a folder, a pipe or a device is one line naming ``path`` and what to do. A file
    with another hard link is refused too (writing it would write that other name), and
    ``O_TRUNC`` empties the file only once it is known to be ours."""
    shown = str(path)
    opening = (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, opening, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            problem = _LINK.format(what=what)
        elif exc.errno == errno.EISDIR:
            problem = f"is a directory, not the {what}"
        elif exc.errno == errno.ENXIO:
            problem = _SPECIAL.format(what=what)
        else:
            problem = f"cannot open the {what} ({exc.strerror or type(exc).__name__})"
        raise fail(shown, f"{problem}; {_MOVE}") from None
    problem = _not_own(os.fstat(fd), what, folder=False)
    if problem:
        os.close(fd)
        raise fail(shown, f"{problem}; {_MOVE}")
    if flags & os.O_TRUNC:
        try:
            os.ftruncate(fd, 0)
        except OSError as exc:
            os.close(fd)
            raise fail(shown, f"cannot empty the {what} ({exc.strerror})") from None
    return fd


_LINK = "is a symbolic link; the {what} is never written through one"
_SPECIAL = "is not a regular file (a pipe or a device), so not the {what}"
_MOVE = "move it away and retry"


def check_own(path: Path, base: Path, what: str, fail: Fail, *, folder: bool = False) -> None:
    """Refuse, before any work, what ``own_folder`` or ``open_own`` would refuse later: a
    symbolic link, or a thing of the wrong kind, at ``path`` or at a folder between ``base``
    and it. Nothing is made: a missing part is fine (it will be made as our own)."""
    for part in _below(base, path):
        try:
            info = os.lstat(part)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise fail(*_unreadable(str(part), exc)) from None
        problem = _not_own(info, what, folder=folder or part != path)
        if problem:
            raise fail(str(part), f"{problem}; {_MOVE}")


def own_folder(path: Path, base: Path, what: str, fail: Fail) -> Path:
    """``path``, a folder below ``base``, with every folder between made if missing; each must
    be a folder of our own, never a symbolic link to one elsewhere (the ``what`` it will hold
    would be written there)."""
    for part in _below(base, path):
        try:
            os.mkdir(part)  # never through a link: one planted there makes it exist already
        except FileExistsError:
            pass
        except (OSError, ValueError) as exc:
            raise fail(str(part), f"cannot make the {what}'s folder ({_reason(exc)})") from None
        problem = _not_own(os.lstat(part), what, folder=True)
        if problem:
            raise fail(str(part), f"{problem}; {_MOVE}")
    return path


def _below(base: Path, path: Path) -> list[Path]:
    """The folders from ``base`` (not included) down to ``path`` (included)."""
    parts = path.relative_to(base).parts
    return [base.joinpath(*parts[: n + 1]) for n in range(len(parts))]


def _not_own(info: os.stat_result, what: str, *, folder: bool) -> str:
    """What is wrong with ``info``'s thing where a folder (or a regular file) of ours is due;
    empty if nothing. A file with another hard link is not ours: writing it writes that."""
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return _LINK.format(what=what)
    if folder:
        return "" if stat.S_ISDIR(mode) else f"is not a folder, so it cannot hold the {what}"
    if stat.S_ISDIR(mode):
        return f"is a directory, not the {what}"
    if not stat.S_ISREG(mode):
        return _SPECIAL.format(what=what)
    if info.st_nlink > 1:
        return f"has another hard link; the {what} is never written through one"
    return ""


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, ValueError):
        return "the name holds a NUL byte"
    return exc.strerror or type(exc).__name__
