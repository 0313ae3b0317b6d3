"""Where an app lives: its one canonical address, and the project it is recorded for.

An app is named by its Modal environment and its app name, ``prod/minilm``; an app of the
workspace's default environment (no environment named anywhere) is plain ``minilm``. Every
command resolves an address the same way (``--env``'s override, else the spec's
``environment``, else the environment of the Modal profile, else the workspace default) and
then uses it for the state key, the build file, the generated module's name, the plan and
every Modal call. Nothing here imports ``modal``: reading the profile is a small TOML read.

Spec paths are recorded relative to the project root (the git top level, else the folder
holding ``.modaliac/``), so a plan made from a subfolder matches one made at the top.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModaliacError
from ..files import check_own, joined, read_text
from ..tokens import hidden, printable, shown, token_kind

# Modal's naming rules (modal/_utils/name_utils.py, modal 1.6.4), as in fields.py.
APP_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")
ENVIRONMENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
STATE_DIR = ".modaliac"
# A command-line target ending so is a spec file's path, never an address (plan/targets.py).
SPEC_SUFFIXES = (".yaml", ".yml")
# Module names past this length are hashed: the build file's name must fit a file system.
MAX_MODULE_NAME = 150
_ESCAPES = {"_": "_0", "-": "_1", ".": "_2"}


class AddressError(ModaliacError):
    """A target or environment name that is not a valid address."""


@dataclass(frozen=True, order=True)
class Address:
    """One Modal app: ``environment`` None is the workspace's default environment."""

    environment: str | None
    app: str

    def __str__(self) -> str:
        return f"{self.environment}/{self.app}" if self.environment else self.app

    @classmethod
    def parse(cls, text: str, environment: str | None = None) -> Address:
        """``env/app`` or ``app`` (then in ``environment``); refuses anything else."""
        kind = token_kind(text, within_words=True)
        if kind is not None:
            raise AddressError(
                f"{hidden(kind)}: not an app name or address; name the app (ENVIRONMENT/APP), "
                "never a secret's value"
            )
        env_part, slash, app = text.rpartition("/")
        if slash:
            check_environment(env_part, "the address")
        if not APP_NAME.match(app) or app in (".", ".."):
            raise AddressError(
                f"{shown(text)}: not an app name or address; app names use letters, digits, "
                "'-', '_' and '.' (never '.' or '..' alone), at most 64 characters (an address is "
                "ENVIRONMENT/APP)"
            )
        if slash and environment is not None and environment != env_part:
            raise AddressError(  # both names checked: the text is safe to repeat
                f"{text}: the address names environment {env_part!r} and --env names "
                f"{environment!r}; give one"
            )
        return cls(env_part if slash else environment, app)

    @property
    def module_name(self) -> str:
        """A Python module name unique to this address, stable, and the same on every file
        system: letters and digits stand for themselves (a capital as ``_`` and its small
        letter, so case-insensitive disks keep two apps apart), ``_`` ``-`` ``.`` become
        ``_0`` ``_1`` ``_2``, and ``__`` separates the environment from the app. Different
        addresses never share a name; a name too long for a file is a hash of the address.
        """
        env = _encode(self.environment) if self.environment else ""
        name = f"modaliac_{env}__{_encode(self.app)}"
        if len(name) <= MAX_MODULE_NAME:
            return name
        import hashlib

        return "modaliac_h" + hashlib.sha256(str(self).encode()).hexdigest()[:40]


def unaddressable(app: str) -> str | None:
    """Why no command could name the app ``app`` (None: one can): ``.`` and ``..`` are
    folders, and a name ending in ``.yaml``/``.yml`` reads as a spec file's path."""
    if app in (".", ".."):
        return f"{app!r} names a folder, not an app"
    suffix = next((s for s in SPEC_SUFFIXES if app.endswith(s)), None)
    if suffix is None:
        return None
    return (
        f"{shown(app)} ends in {suffix}, and a command-line target ending in .yaml or .yml is "
        "a spec file's path, so no command could name this app"
    )


def _encode(name: str) -> str:
    return "".join(_ESCAPES.get(c) or (f"_{c.lower()}" if c.isupper() else c) for c in name)


def check_environment(name: str, where: str) -> str:
    kind = token_kind(name, within_words=True)
    if kind is not None:
        raise AddressError(
            f"{where}: {hidden(kind)} is not a Modal environment name; name the environment, "
            "never a secret's value"
        )
    if not ENVIRONMENT_NAME.match(name):
        raise AddressError(
            f"{where}: {shown(name)} is not a Modal environment name (letters, digits, '-' "
            "and '_', starting with a letter or digit, at most 64 characters)"
        )
    return name


# -- the Modal profile's environment ----------------------------------------------------------


def profile_environment() -> str | None:
    """The environment Modal's own CLI would use: ``MODAL_ENVIRONMENT``, else the active
    profile's ``environment`` in ``~/.modal.toml`` (``MODAL_CONFIG_PATH``), else None (the
    workspace's default). Read as modal 1.6.4's ``config.py`` reads it, without importing it.
    """
    if "MODAL_ENVIRONMENT" in os.environ:
        value = os.environ["MODAL_ENVIRONMENT"]
        return check_environment(value, "MODAL_ENVIRONMENT") if value else None
    config = read_modal_config()
    active = [name for name, values in config.items() if values.get("active") is True]
    if len(active) > 1:  # as modal 1.6.4 refuses it
        raise AddressError(
            f"{modal_config_path()}: more than one Modal profile is active "
            f"({', '.join(shown(name) for name in active)}); run `modal profile activate` "
            "or edit the file"
        )
    profile = os.environ.get("MODAL_PROFILE") or (active[0] if active else "default")
    tokens = os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET")
    if os.environ.get("MODAL_PROFILE") and profile not in config and not tokens:
        raise AddressError(  # modal 1.6.4 refuses it too (when no token is set in the env)
            f"MODAL_PROFILE: Modal profile {shown(profile)} is not in {modal_config_path()}; "
            "run `modal profile list`, or unset MODAL_PROFILE"
        )
    chosen = config.get(profile, {}).get("environment")
    if chosen is None or chosen == "":
        return None
    if not isinstance(chosen, str):
        raise AddressError(f"{modal_config_path()}: [{profile}] environment must be text")
    return check_environment(chosen, f"{modal_config_path()}: [{profile}] environment")


def modal_config_path() -> Path:
    return Path(os.environ.get("MODAL_CONFIG_PATH") or Path("~/.modal.toml").expanduser())


def read_modal_config() -> dict[str, dict[str, object]]:
    """Modal's config file as profile -> settings; empty when there is none. Anything but a
    regular file (``/dev/null``, a folder, a pipe) holds no config and is never opened:
    reading a pipe would wait for ever."""
    import tomllib  # here, not at the top: `modaliac --help` imports this module

    path = modal_config_path()
    name = str(path)
    if not name.isprintable():
        raise AddressError(
            f"MODAL_CONFIG_PATH: {printable(name)}: the name holds a control character; "
            "name Modal's config file in printable characters"
        )
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {}  # no config, as for modal
    except OSError as exc:
        raise AddressError(f"{name}: cannot read Modal's config ({exc.strerror})") from None
    if stat.S_ISCHR(info.st_mode) and os.path.samefile(path, os.devnull):
        return {}  # /dev/null: an empty config, as for modal
    text = read_text(path, name, "Modal config", 2**20, joined(AddressError))
    try:
        document = tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as exc:
        raise AddressError(f"{path}: cannot read Modal's config ({exc})") from None
    return {name: values for name, values in document.items() if isinstance(values, dict)}


# -- the project ------------------------------------------------------------------------------


def project_root(start: Path | None = None) -> Path:
    """The git top level above ``start`` (the working directory), else the nearest folder
    holding ``.modaliac/``, else ``start`` itself."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    for folder in (here, *here.parents):
        if (folder / STATE_DIR).is_dir():
            return folder
    return here


@dataclass(frozen=True)
class Project:
    """The project root, and how spec paths are recorded against it and shown to the user."""

    root: Path
    cwd: Path

    @classmethod
    def here(cls) -> Project:
        """The project the working directory is in. Its ``.modaliac`` must be a folder of its
        own (or none yet): a file, a pipe or a link to a folder elsewhere is refused before
        anything is read or written there."""
        cwd = Path.cwd().resolve()
        root = project_root(cwd)
        check_own(root / STATE_DIR, root, "state", joined(ModaliacError), folder=True)
        return cls(root, cwd)

    def recorded(self, path: str | os.PathLike[str]) -> str:
        """The path a state and a plan record: relative to the root, ``/``-separated; a file
        outside the project is recorded by its absolute path."""
        absolute = Path(os.path.abspath(Path(self.cwd, path)))
        try:
            return absolute.relative_to(self.root).as_posix()
        except ValueError:
            return absolute.as_posix()

    def resolve(self, recorded: str) -> Path:
        """Where a recorded path is on this machine."""
        return Path(self.root, recorded)

    def shown(self, recorded: str) -> str:
        """A recorded path as the user standing in ``cwd`` would type it."""
        if not recorded:
            return recorded
        return os.path.relpath(self.resolve(recorded), self.cwd)

    @property
    def state_path(self) -> Path:
        return self.root / STATE_DIR / "state.json"

    @property
    def build_dir(self) -> Path:
        return self.root / STATE_DIR / "build"

    @property
    def log_dir(self) -> Path:
        """Where the Modal SDK's own output of a run is kept (``sdk_log.py``)."""
        return self.root / STATE_DIR / "logs"

    @property
    def spec_dir(self) -> Path:
        return self.root / "specs"
