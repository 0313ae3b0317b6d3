"""What a spec change does to the generated code, before anyone deploys it.

A plan says which settings change; a reviewer also wants the lines of the generated Modal
app that change. Two comparisons: the specs against the recorded state (what was last
applied), and the specs against another git revision of themselves, which needs neither
Modal credentials nor a state file, so it runs in any pull-request job.

Generated files are compared without their two header lines (spec path, spec hash and
modaliac version): a header alone is not a change, only a note.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any, Literal

from ..errors import ModaliacError, SpecError, SpecErrors
from ..loading.load import LoadedSpec, find_spec_files, load_spec
from ..render.app import HEADER_LINES, render_all
from ..spec.address import Project
from ..spec.gateway import GatewaySpec
from ..state.records import AppRecord, State
from .changes import FieldChange, Inputs, field_changes
from .plan import Desired, deletions

Status = Literal["added", "removed", "changed", "unchanged"]
_EMPTY = "/dev/null"
_SPEC_SUFFIXES = (".yaml", ".yml")
_HEADER_ONLY = (
    "only the header differs (spec path, spec hash or modaliac version); "
    "the generated code is the same"
)


@dataclass(frozen=True)
class AppDiff:
    """One app's generated file and settings, before and after."""

    address: str
    spec_path: str
    status: Status
    lines: tuple[str, ...]  # unified diff of the generated file, without line ends
    fields: tuple[FieldChange, ...]
    notes: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        return self.status != "unchanged"


@dataclass(frozen=True)
class _Version:
    """One side of a comparison: a generated file and the settings it came from."""

    address: str
    filename: str
    where: str  # the spec it was rendered from, or "recorded"
    source: str
    settings: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.filename} ({self.where})"


# -- specs against the recorded state ------------------------------------------------------


def diff_recorded(
    desired: list[Desired],
    state: State,
    delete_scope: list[str] | None = None,
    run: Inputs | None = None,
    root: Path | None = None,
) -> list[AppDiff]:
    """Each desired app against what the state says was last applied.

    ``delete_scope``, ``run`` (its ``--env`` and Modal's settings) and ``root`` work as in
    ``make_plan``, through
    the same ``deletions``: a recorded app shows as removed exactly when a plan would delete
    it.
    """
    diffs = []
    wanted = {item.address: item for item in desired}
    for address, item in sorted(wanted.items()):
        after = _desired_version(item, item.loaded.recorded_path)
        record = state.apps.get(address)
        before, notes = None, []
        if record is not None:
            before = _recorded_version(record)
            if not record.source:
                notes.append("the state holds no generated source for this app")
        diffs.append(_compare(item.loaded.recorded_path, before, after, notes))
    for record in deletions(desired, state, delete_scope, run, root):
        before = _recorded_version(record)
        diffs.append(_compare(record.spec_path, before, None, ["its spec was removed"]))
    return diffs


def _desired_version(item: Desired, where: str, source: str | None = None) -> _Version:
    """``source``: the file already rendered, when at hand (``item`` renders it again)."""
    if source is None:
        source = item.rendered.source
    return _Version(item.address, item.rendered.filename, where, source, item.settings())


def _recorded_version(record: AppRecord) -> _Version:
    return _Version(record.address, f"{record.app}.py", "recorded", record.source, record.settings)


# -- specs against another git revision ----------------------------------------------------


def diff_git(base_ref: str, targets: list[str], repo_root: Path) -> list[AppDiff]:
    """The specs on disk against the same specs at ``base_ref``, like ``git diff REF``.

    ``targets`` are spec files or directories relative to ``repo_root``, a directory inside
    a git work tree. Specs pair up by path: one added or removed since ``base_ref`` shows as
    a whole generated file added or removed. A spec that is invalid at ``base_ref`` is
    reported in a note; an invalid spec on disk is an error, as it is for ``plan``.

    A spec whose bytes are the same at ``base_ref`` as on disk is loaded and rendered once:
    nothing else goes into a render that could differ between the two sides (both are loaded
    now, by this modaliac, under the same path, environment and Modal profile).
    """
    if not targets:
        raise ModaliacError("name the spec files or directories to compare")
    commit = _resolve(base_ref, repo_root)
    paths = [_relative(target, repo_root) for target in targets]
    base_files = _base_files(commit, paths, repo_root)
    after, digests = _working_versions(paths, repo_root)
    before, invalid = _base_versions(base_ref, base_files, after, digests)
    missing = [p for p in paths if not _any_under(p, [*before, *invalid, *after])]
    if missing:
        raise ModaliacError(f"{missing[0]}: no spec files there, neither at {base_ref} nor on disk")
    diffs = []
    for key in sorted({*before, *invalid, *after}):
        path = key.partition("#")[0]
        notes = [invalid[key]] if key in invalid else []
        diffs.append(_compare(path, before.get(key), after.get(key), notes))
    return diffs


def _run_git(args: list[str], cwd: Path, stdin: bytes | None = None) -> CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True)
    except FileNotFoundError:
        raise ModaliacError("git is not installed; --base compares git revisions") from None
    except NotADirectoryError:
        raise ModaliacError(f"{cwd}: not a directory") from None


def _git(args: list[str], cwd: Path, stdin: bytes | None = None) -> bytes:
    """Run git; its failure becomes a ModaliacError holding git's own last line."""
    done = _run_git(args, cwd, stdin)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise ModaliacError(f"git {args[0]} failed: {lines[-1] if lines else done.returncode}")
    return done.stdout


def _resolve(ref: str, repo_root: Path) -> str:
    """The commit ``ref`` names, or one clear line saying why there is none."""
    if _run_git(["rev-parse", "--is-inside-work-tree"], repo_root).returncode != 0:
        raise ModaliacError(f"{repo_root}: not inside a git work tree; --base needs one")
    found = None
    if ref and not ref.startswith("-"):  # never let a ref be read as an option
        found = _run_git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo_root)
    if found is None or found.returncode != 0:
        raise ModaliacError(f"{ref!r} is not a commit, branch or tag in this git repository")
    return found.stdout.decode().strip()


def _relative(target: str, repo_root: Path) -> str:
    """A target as a clean path relative to ``repo_root``; refuse one outside it."""
    path = Path(os.path.normpath(target))
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(repo_root.resolve())
        except ValueError:
            path = Path("..")
    if path.parts[:1] == ("..",):
        raise ModaliacError(f"{target}: outside {repo_root}; name specs inside the repository")
    return path.as_posix()


def _any_under(target: str, paths: list[str]) -> bool:
    paths = [p.partition("#")[0] for p in paths]
    return target == "." or any(p == target or p.startswith(target + "/") for p in paths)


def _base_files(commit: str, targets: list[str], repo_root: Path) -> dict[str, bytes]:
    """Spec path -> bytes at ``commit``, for every spec the targets cover there."""
    listing = _git(["ls-tree", "-r", "-z", commit, "--", *targets], repo_root)
    blobs: dict[str, str] = {}
    for entry in os.fsdecode(listing).split("\0"):
        meta, _, path = entry.partition("\t")
        kind = meta.split(" ")[1] if meta.count(" ") == 2 else ""
        if kind == "blob" and (path in targets or path.endswith(_SPEC_SUFFIXES)):
            blobs[path] = meta.split(" ")[2]
    return dict(zip(blobs, _read_blobs(list(blobs.values()), repo_root), strict=True))


def _read_blobs(ids: list[str], repo_root: Path) -> list[bytes]:
    """Every blob in one ``git cat-file --batch`` call, not one process per spec."""
    if not ids:
        return []
    out = _git(["cat-file", "--batch"], repo_root, stdin="".join(f"{i}\n" for i in ids).encode())
    contents, at = [], 0
    for _ in ids:
        header_end = out.index(b"\n", at)
        size = int(out[at:header_end].split()[2])
        contents.append(out[header_end + 1 : header_end + 1 + size])
        at = header_end + 1 + size + 1  # the content is followed by a newline
    return contents


def _base_versions(
    ref: str, files: dict[str, bytes], working: dict[str, _Version], digests: dict[str, str]
) -> tuple[dict[str, _Version], dict[str, str]]:
    """The specs at ``ref`` (path -> bytes) rendered, and a note for each one that cannot be.

    A spec with the bytes it has on disk (``digests``: path -> sha256) takes its ``working``
    versions, labelled with ``ref``, instead of being loaded and rendered again."""
    versions, invalid = {}, {}
    same = {path for path, raw in files.items() if digests.get(path) == _sha256(raw)}
    for key, version in working.items():
        path = key.partition("#")[0]
        if path in same:
            versions[key] = replace(version, where=f"{ref}:{path}")
    with tempfile.TemporaryDirectory(prefix="modaliac-diff-") as temp:
        for path, raw in files.items():
            if path in same:
                continue
            copy = Path(temp, path)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(raw)
            try:
                versions.update(_versions(_load_as(copy, path), f"{ref}:{path}"))
            except ModaliacError as exc:
                invalid[path] = _invalid_note(path, ref, exc)
    return versions, invalid


def _invalid_note(path: str, ref: str, exc: ModaliacError) -> str:
    problems = str(exc).splitlines() or [type(exc).__name__]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{path} is not a valid spec at {ref}: {problems[0]}{more}"


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _working_versions(
    targets: list[str], repo_root: Path
) -> tuple[dict[str, _Version], dict[str, str]]:
    """The specs on disk rendered, and each spec's digest by path; every invalid one is
    reported at once, as plan does."""
    versions, digests, errors = {}, {}, []
    for target in targets:
        if not os.path.lexists(repo_root / target):  # never raises (a name too long, a NUL)
            continue  # removed since the base revision: a file there is read once, below
        for file in find_spec_files(repo_root / target):
            path = file.relative_to(repo_root).as_posix()
            try:
                loaded = _load_as(file, path)
                found = _versions(loaded, path)
            except SpecErrors as exc:
                errors.extend(exc.errors)
            except SpecError as exc:
                errors.append(exc)
            else:
                versions.update(found)
                digests[path] = loaded.digest
    if errors:
        raise SpecErrors(errors)
    return versions, digests


def _load_as(file: Path, shown: str) -> LoadedSpec:
    """Load ``file`` as if it were ``shown``: headers and errors name the spec's own path."""
    try:
        return replace(load_spec(file), path=shown, project_path=shown)
    except SpecErrors as exc:
        raise SpecErrors([_renamed(error, shown) for error in exc.errors]) from None
    except SpecError as exc:
        raise _renamed(exc, shown) from None


def _renamed(error: SpecError, shown: str) -> SpecError:
    return SpecError(
        shown, error.message, line=error.line, column=error.column, key_path=error.key_path
    )


def _versions(loaded: LoadedSpec, where: str) -> dict[str, _Version]:
    """The versions of a spec's apps by key: its path, or ``path#app`` for a gateway's apps."""
    rendered = render_all(loaded)
    gateway = isinstance(loaded.spec, GatewaySpec)
    return {
        f"{loaded.path}#{item.app}" if gateway else loaded.path: _desired_version(
            Desired(loaded, item), where, item.source
        )
        for item in rendered
    }


# -- comparing -----------------------------------------------------------------------------


def _compare(
    spec_path: str, before: _Version | None, after: _Version | None, notes: list[str]
) -> AppDiff:
    old, new = (before.source if before else ""), (after.source if after else "")
    fields = field_changes(before.settings if before else {}, after.settings if after else {})
    lines: tuple[str, ...] = ()
    if before and after and _body(old) == _body(new):
        if old != new and not fields:
            notes = [*notes, _HEADER_ONLY]
    elif old or new:
        lines = _unified(
            old, new, before.label if before else _EMPTY, after.label if after else _EMPTY
        )
    status: Status = "changed"
    if before is None:
        status = "added" if after is not None else "removed"
    elif after is None:
        status = "removed"
    elif not lines and not fields:
        status = "unchanged"
    known = after or before
    address = known.address if known else spec_path
    return AppDiff(address, spec_path, status, lines, fields, tuple(notes))


def _body(source: str) -> str:
    parts = source.split("\n", HEADER_LINES)
    return parts[HEADER_LINES] if len(parts) > HEADER_LINES else ""


def _unified(old: str, new: str, old_label: str, new_label: str) -> tuple[str, ...]:
    """A unified diff that ignores the header: the old file is given the new one's header,
    so hunk line numbers stay those of the real files."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    if old_lines and new_lines:
        old_lines[:HEADER_LINES] = new_lines[:HEADER_LINES]
    found = difflib.unified_diff(old_lines, new_lines, old_label, new_label, n=3, lineterm="")
    return tuple(found)


# -- presenting ----------------------------------------------------------------------------

_SYMBOL = {"added": "+", "removed": "-", "changed": "~", "unchanged": "="}


def format_diff(
    diffs: list[AppDiff], *, color: bool = False, project: Project | None = None
) -> tuple[str, bool]:
    """The diffs as terminal text, and whether any app differs (for ``--exit-code``); spec
    paths are shown from where the user stands when ``project`` says where that is."""

    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    out: list[str] = []
    for item in diffs:
        if item.differs or item.notes:
            shown = project.shown(item.spec_path) if project else item.spec_path
            out.append(paint("1", f"{_SYMBOL[item.status]} {item.address}") + f"  ({shown})")
            out.extend(paint(_line_color(line), line) for line in item.lines)
            if item.status == "changed":
                out.extend(_field_lines(item.fields))
            out.extend(paint("2", f"    # {note}") for note in item.notes)
            out.append("")
    unchanged = [d.address for d in diffs if not d.differs and not d.notes]
    if unchanged:
        out.append(f"Unchanged: {', '.join(unchanged)}")
    count = sum(d.differs for d in diffs)
    out.append(
        f"{count} app{' differs' if count == 1 else 's differ'}." if count else "No differences."
    )
    return "\n".join(out) + "\n", count > 0


def _line_color(line: str) -> str:
    if line.startswith(("---", "+++")):
        return "1"
    return {"@": "36", "-": "31", "+": "32"}.get(line[:1], "0")


def _field_lines(fields: tuple[FieldChange, ...]) -> list[str]:
    if not fields:
        return []
    width = max(len(f.path) for f in fields)
    return ["  settings:"] + [
        f"    {f.path.ljust(width)} : {_json(f.before)} -> {_json(f.after)}" for f in fields
    ]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
