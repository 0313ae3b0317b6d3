"""``modaliac init``: a starting repository a new user can validate, plan and commit.

It writes a commented spec under ``specs/`` whose schema line points at the ``schema.json``
it writes beside ``specs/``, a ``.gitignore`` for the local state, and on request the GitOps
workflow the package ships and a pre-commit config. Every target is checked before any is
written: an existing file is refused, and nothing is written then.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModaliacError
from ..tokens import printable

DEFAULT_MODEL = "BAAI/bge-small-en-v1.5"
DEFAULT_TASK = "embed"
DEFAULT_GPU = "L4"
SPECS_DIR = "specs"
WORKFLOW = Path(".github") / "workflows" / "modaliac.yml"


@dataclass(frozen=True)
class Planned:
    """One file init writes: where (relative to the directory) and what."""

    path: Path
    text: str


def register(commands: Any) -> None:
    """Add ``init`` to the CLI's parser."""
    init = commands.add_parser(
        "init",
        help="write a starting repository: a spec, the schema, .gitignore",
        description=(
            "Write specs/APP.yaml (a commented spec that validates), schema.json (what the "
            "spec's schema line points editors at) and a .gitignore for .modaliac/ into DIR; "
            "with --gitops also the GitHub Actions workflow, with --pre-commit a pre-commit "
            "config. Existing files are never overwritten: if any target exists, nothing "
            "is written."
        ),
    )
    init.add_argument("dir", nargs="?", default=".", metavar="DIR")
    init.add_argument("--model", metavar="ID", help=f"Hugging Face model id ({DEFAULT_MODEL})")
    init.add_argument(
        "--task", choices=["embed", "generate"], help="embed or generate (needed with --model)"
    )
    init.add_argument("--gpu", metavar="GPU", help=f"Modal GPU type ({DEFAULT_GPU})")
    init.add_argument("--app", metavar="NAME", help="Modal app name (from the model id)")
    init.add_argument(
        "--gitops", action="store_true", help=f"also write the workflow {WORKFLOW.as_posix()}"
    )
    init.add_argument(
        "--pre-commit", action="store_true", help="also write .pre-commit-config.yaml"
    )
    init.set_defaults(run=cmd_init)


def cmd_init(args: argparse.Namespace, console: Any) -> int:
    from ..plan.targets import UsageError

    if args.model is not None and args.task is None:
        raise UsageError("init: --model needs --task embed or --task generate")
    root = Path(_folder_name(args.dir))
    planned = plan_files(
        model=args.model or DEFAULT_MODEL,
        task=args.task or DEFAULT_TASK,
        gpu=args.gpu or DEFAULT_GPU,
        app=args.app,
        gitops=args.gitops,
        pre_commit=args.pre_commit,
    )
    write_files(root, planned)
    for item in planned:
        console.print(f"wrote {root / item.path}")
    spec = (root / planned[0].path).as_posix()
    console.print(f"next: modaliac validate {spec} && modaliac plan {spec}")
    return 0


def _folder_name(text: str) -> str:
    """The project folder to make: a name the next commands can be typed with."""
    from ..tokens import hidden, printable, token_kind

    kind = token_kind(text, within_words=True)
    if kind is not None:
        raise ModaliacError(f"init: {hidden(kind)} is a folder name; name the project folder")
    if not text.isprintable():
        raise ModaliacError(
            f"init: {printable(text)!r} holds a control character; name the folder plainly"
        )
    return text


def plan_files(
    *, model: str, task: str, gpu: str, app: str | None, gitops: bool, pre_commit: bool
) -> list[Planned]:
    """Every file init would write, the spec first; its options checked, its spec validated."""
    from ..loading.modeline import SCHEMA_FILE, modeline
    from ..spec.schema import schema_text

    canonical_gpu = _option_gpu(gpu)
    _option_model(model)
    name = app if app is not None else app_name(model)
    spec_path = Path(SPECS_DIR) / f"{name}.yaml"
    values = {
        "modeline": modeline(spec_path, Path(SCHEMA_FILE)),
        "app": _yaml_scalar(name),
        "model": _yaml_scalar(model),
        "task": task,
        "gpu": _yaml_scalar(canonical_gpu),
    }
    planned = [
        Planned(spec_path, _render("spec.yaml.j2", values)),
        Planned(Path(SCHEMA_FILE), schema_text()),
        Planned(Path(".gitignore"), _render("gitignore.j2", {})),
    ]
    if gitops:
        planned.append(Planned(WORKFLOW, example_workflow()))
    if pre_commit:
        values = {"specs_dir": SPECS_DIR}
        planned.append(
            Planned(Path(".pre-commit-config.yaml"), _render("pre-commit-config.yaml.j2", values))
        )
    _check_spec(planned[0])
    return planned


def write_files(root: Path, planned: list[Planned]) -> None:
    """Write every file, or none. Each is created exclusively (``O_EXCL``: never over a file,
    a folder or a symbolic link, one pointing nowhere too), so whatever is there, or appears
    while init runs, is refused, and the files written before it are removed again. Those
    there already are all named first, before anything is written."""
    existing = [item.path for item in planned if os.path.lexists(root / item.path)]
    if existing:
        shown = ", ".join(printable(str(root / path)) for path in existing)
        verb = "exists" if len(existing) == 1 else "exist"
        raise ModaliacError(
            f"init: {shown} already {verb}; init writes only new files (nothing was written)"
        )
    written: list[Path] = []
    try:
        for item in planned:
            target = root / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "x", encoding="utf-8", newline="") as handle:
                written.append(target)
                handle.write(item.text)
    except (OSError, ValueError) as exc:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        shown = printable(str(target))
        if isinstance(exc, FileExistsError) or os.path.lexists(target):
            problem = "already exists; init writes only new files"
        else:
            problem = f"cannot be written ({getattr(exc, 'strerror', None) or 'a bad name'})"
        raise ModaliacError(f"init: {shown} {problem} (nothing was written)") from None


def app_name(model: str) -> str:
    """A Modal app name from a model id: ``BAAI/bge-small-en-v1.5`` -> ``bge-small-en-v1-5``."""
    last = model.rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9]+", "-", last).strip("-")[:64] or "model"


def example_workflow() -> str:
    """The GitOps workflow the package ships (examples/gitops/ in a source checkout)."""
    here = Path(__file__).parent.parent  # the package
    packaged = here / "data" / "gitops-workflow.yml"
    source = here.parent / "examples" / "gitops" / WORKFLOW
    return (packaged if packaged.is_file() else source).read_text(encoding="utf-8")


def _option_gpu(value: str) -> str:
    from ..plan.targets import UsageError
    from ..spec.gpu import _parse_gpu

    try:
        parsed = _parse_gpu(value)
    except ValueError as exc:
        raise UsageError(f"init: --gpu: {exc}") from None
    return f"{parsed['type']}:{parsed['count']}" if parsed["count"] > 1 else str(parsed["type"])


def _option_model(value: str) -> None:
    from ..plan.targets import UsageError
    from ..spec.fields import HF_ID

    if not HF_ID.fullmatch(value):
        raise UsageError(f'init: --model: {value!r} is not a Hugging Face id like "org/name"')


def _yaml_scalar(value: str) -> str:
    """``value`` as YAML reads it back as that same string: plain when it can be, else quoted."""
    from ruamel.yaml import YAML

    loaded = YAML(typ="safe", pure=True).load(f"k: {value}\n")
    if isinstance(loaded, dict) and loaded.get("k") == value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render(name: str, values: dict[str, str]) -> str:
    import jinja2

    from ..render.app import template_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir() / "init"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML: values are prepared (quoted where needed) in Python
        keep_trailing_newline=True,
    )
    return env.get_template(name).render(values)


def _check_spec(spec: Planned) -> None:
    """The spec validates as written (a model that does not fit the GPU, a bad app name):
    refused here, before anything is written, with what validate would say."""
    import tempfile

    from ..errors import SpecError, SpecErrors
    from ..loading.load import load_spec

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / spec.path.name
        path.write_text(spec.text, encoding="utf-8")
        try:
            load_spec(path, default_environment=None)
        except (SpecError, SpecErrors) as exc:
            errors = exc.errors if isinstance(exc, SpecErrors) else [exc]
            first = errors[0]
            where = f"{first.key_path}: " if first.key_path else ""
            raise ModaliacError(
                f"init: the spec would not validate: {where}{first.message}"
            ) from None
