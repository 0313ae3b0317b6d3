"""Render the markdown plan as GitHub shows it in a pull-request comment, and screenshot it.

Usage (from any directory; paths are resolved from the current directory)::

    python scripts/plan_screenshot.py --png docs/plan-comment.png
    python scripts/plan_screenshot.py --html plan.html        # the page only, no Chromium

The plan is ``modaliac plan --format markdown --offline`` over a few bundled examples with a
recorded state seeded so the comment shows every kind of row: an update (``gemma-chat``, whose
recorded GPUs and scaling differ), creates, a delete (``qwen-chat``, whose spec was removed),
the cost table and a policy warning. No Modal credentials or network are used. The markdown is
rendered with markdown-it-py as GitHub does (tables, raw HTML kept, ``diff`` blocks coloured),
wrapped in a standalone page with an inline stylesheet, and, with ``--png``, screenshot with
headless Chromium (``--chromium``, default ``chromium`` on PATH). Nothing in the page comes
from the clock, so the same checkout gives the same page.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REGENERATE_COMMAND = "python scripts/plan_screenshot.py --png docs/plan-comment.png"

# Plan with this checkout's modal_iac, not with whichever copy happens to be installed.
sys.path.insert(0, str(ROOT))

CREATED = (
    "kalm-embedding-gpu-snapshot.yaml",  # its moving revision is a policy warning
    "small-embedding-no-snapshot.yaml",
    "embedding-http-staging.yaml",  # one warm container: an idle floor in the cost table
)
UPDATED = "chat-gpu-fallback.yaml"
# What the recorded (deployed) version of UPDATED said: (now, then) pairs of spec text.
UPDATED_BEFORE = (
    ("gpu: [H100:2, A100-80GB:2]", "gpu: [A100-80GB:2]"),
    ("max_num_seqs: 64", "max_num_seqs: 32"),
    ("scaledown_window: 15m", "scaledown_window: 5m"),
)
DELETED = "qwen-chat-sleep-snapshot.yaml"

WINDOW_WIDTH = 1000
FIRST_HEIGHT = 2000
MAX_HEIGHT = 32000
BOTTOM_MARGIN = 24
CHROMIUM_TIMEOUT = 120  # seconds


class ScreenshotError(Exception):
    """A one-line reason the page or the screenshot could not be made."""


# -- the plan -----------------------------------------------------------------------------


@contextlib.contextmanager
def _offline_in(workdir: Path) -> Iterator[None]:
    """Run in ``workdir`` with no Modal profile, token or modaliac variable; restore after."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("MODAL_", "MODALIAC_")):
            del os.environ[key]
    os.environ["MODAL_CONFIG_PATH"] = str(workdir / "no-modal.toml")
    try:
        with contextlib.chdir(workdir):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _record(spec_paths: Sequence[str], state_path: Path) -> None:
    """Write a state as if these specs (relative to the cwd) had been applied."""
    from modal_iac.loading.load import load_spec
    from modal_iac.plan.plan import Desired
    from modal_iac.render.app import render
    from modal_iac.state.records import State
    from modal_iac.state.store import write_state

    state = State()
    for path in spec_paths:
        loaded = load_spec(path)
        record = Desired(loaded, render(loaded)).record()
        state.apps[record.address] = record
    write_state(state_path, state)


def _seed(workdir: Path) -> Path:
    """specs/ and a state in ``workdir`` that plan to an update, creates and a delete."""
    specs = workdir / "specs"
    specs.mkdir()
    for name in CREATED:
        shutil.copy(EXAMPLES / name, specs / name)
    now = (EXAMPLES / UPDATED).read_text(encoding="utf-8")
    before = now
    for new, old in UPDATED_BEFORE:
        if new not in before:
            raise ScreenshotError(f"examples/{UPDATED} no longer contains {new!r}")
        before = before.replace(new, old, 1)
    (specs / UPDATED).write_text(before, encoding="utf-8")
    shutil.copy(EXAMPLES / DELETED, specs / DELETED)
    state_path = workdir / "state.json"
    _record([f"specs/{UPDATED}", f"specs/{DELETED}"], state_path)
    (specs / UPDATED).write_text(now, encoding="utf-8")
    (specs / DELETED).unlink()
    return state_path


def plan_markdown() -> str:
    """``modaliac plan specs --format markdown --offline`` over the seeded examples."""
    from modal_iac.cli import main

    with tempfile.TemporaryDirectory(prefix="modaliac-plan-") as temp, _offline_in(Path(temp)):
        state_path = _seed(Path(temp))
        out, err = io.StringIO(), io.StringIO()
        argv = ["--color", "never", "plan", "specs", "--offline", "--format", "markdown"]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*argv, "--state", str(state_path)])
    if code != 0:
        raise ScreenshotError(f"modaliac plan exited {code}: {err.getvalue().strip()}")
    return out.getvalue()


# -- the page -----------------------------------------------------------------------------


def highlight_diff(code: str, lang: str, _attrs: str) -> str:
    """Colour ``diff`` blocks line by line as GitHub does; other blocks stay plain ("")."""
    if lang != "diff":
        return ""
    lines = []
    for line in code.splitlines(keepends=True):
        kind = {"+": "inserted", "-": "deleted"}.get(line[:1])
        text = html.escape(line, quote=False)
        lines.append(f'<span class="{kind}">{text}</span>' if kind else text)
    return "".join(lines)


def render_markdown(markdown: str) -> str:
    """The comment body as GitHub renders a comment: CommonMark, raw HTML kept, tables,
    ~~strike~~, and a newline inside a paragraph is a line break (unlike in README files)."""
    from markdown_it import MarkdownIt

    options = {"html": True, "breaks": True, "highlight": highlight_diff}
    md = MarkdownIt("commonmark", options).enable(["table", "strikethrough"])
    return str(md.render(markdown))


# GitHub's comment look, in a few rules: system fonts, 14px body, bordered tables, grey code.
STYLESHEET = """
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 0; background: #ffffff; color: #1f2328;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial,
    "Liberation Sans", sans-serif;
  font-size: 14px; line-height: 1.5; }
.comment { width: 880px; margin: 0 auto; border: 1px solid #d0d7de; border-radius: 6px; }
.comment-header { padding: 8px 16px; background: #f6f8fa; color: #59636e;
  border-bottom: 1px solid #d0d7de; border-radius: 6px 6px 0 0; }
.comment-header strong { color: #1f2328; }
.markdown-body { padding: 16px; overflow-wrap: break-word; }
.markdown-body > :first-child { margin-top: 0; }
.markdown-body > :last-child { margin-bottom: 0; }
h3 { margin: 24px 0 16px; font-size: 1.25em; font-weight: 600; line-height: 1.25; }
p, blockquote, table, pre, details { margin: 0 0 16px; }
a { color: #0969da; }
code, pre { font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas,
  "Liberation Mono", "DejaVu Sans Mono", monospace; font-size: 85%; }
code { padding: 0.2em 0.4em; background: rgba(175, 184, 193, 0.2); border-radius: 6px; }
pre { padding: 16px; overflow: auto; line-height: 1.45; background: #f6f8fa;
  border-radius: 6px; }
pre code { padding: 0; font-size: 100%; background: transparent; white-space: pre; }
pre .inserted { color: #116329; background: #dafbe1; }
pre .deleted { color: #82071e; background: #ffebe9; }
table { display: block; width: max-content; max-width: 100%; overflow: auto;
  border-spacing: 0; border-collapse: collapse; font-variant: tabular-nums; }
th, td { padding: 6px 13px; border: 1px solid #d0d7de; }
th { font-weight: 600; }
tr { background: #ffffff; border-top: 1px solid #d1d9e0; }
tr:nth-child(2n) { background: #f6f8fa; }
td code, th code { white-space: nowrap; }
blockquote { padding: 0 1em; color: #59636e; border-left: 0.25em solid #d0d7de; }
blockquote strong { color: #1f2328; }
details summary { display: list-item; cursor: pointer; }
details[open] > summary { margin-bottom: 8px; }
"""


def open_first_details(body: str) -> str:
    """Unfold the first app section, as a reader who clicks it sees it (the rest stay folded)."""
    return body.replace("<details>", "<details open>", 1)


def build_page(markdown: str, title: str = "modaliac plan") -> str:
    """A complete HTML document showing ``markdown`` as a comment; nothing loaded from outside."""
    body = open_first_details(render_markdown(markdown))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{STYLESHEET}</style>\n"
        "</head>\n<body>\n"
        '<div class="comment">\n'
        '<div class="comment-header"><strong>github-actions</strong> commented</div>\n'
        f'<div class="markdown-body">\n{body}</div>\n'
        "</div>\n</body>\n</html>\n"
    )


# -- the screenshot -----------------------------------------------------------------------


def chromium_command(
    chromium: str, html_path: Path, png_path: Path, profile: Path, height: int
) -> list[str]:
    """Headless Chromium that loads one local file, talks to no server and writes one PNG."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW_WIDTH},{height}",
        f"--screenshot={png_path}",
        html_path.resolve().as_uri(),
    ]


def _shoot(chromium: str, html_path: Path, png_path: Path, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="modaliac-chromium-") as profile:
        command = chromium_command(chromium, html_path, png_path, Path(profile), height)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ScreenshotError(f"{chromium}: {exc}") from None
    if done.returncode != 0 or not png_path.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ScreenshotError(f"{chromium} exited {done.returncode}: {last}")


def content_bottom(png_path: Path) -> int:
    """The row below the last non-white pixel (the page background is white)."""
    from PIL import Image, ImageChops

    with Image.open(png_path) as image:
        rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, "white")).getbbox()
    return box[3] if box else 0


def trim(png_path: Path, bottom: int) -> None:
    """Cut the blank rows below ``bottom`` (keeping a margin) and store the PNG compactly."""
    from PIL import Image

    with Image.open(png_path) as image:
        rgb = image.convert("RGB")
    cropped = rgb.crop((0, 0, rgb.width, min(rgb.height, bottom + BOTTOM_MARGIN)))
    cropped.quantize(colors=256, dither=Image.Dither.NONE).save(png_path, optimize=True)


def screenshot(chromium: str, html_path: Path, png_path: Path) -> None:
    """Screenshot the whole page: a window taller than it, then the blank rows trimmed."""
    height = FIRST_HEIGHT
    while True:
        _shoot(chromium, html_path, png_path, height)
        bottom = content_bottom(png_path)
        if bottom < height - BOTTOM_MARGIN:
            break
        if height >= MAX_HEIGHT:
            raise ScreenshotError(f"the page is taller than {MAX_HEIGHT} pixels")
        height *= 2
    trim(png_path, bottom)


# -- command line -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--html", type=Path, help="write the page to this file")
    parser.add_argument("--png", type=Path, help="write a screenshot to this file (Chromium)")
    parser.add_argument(
        "--chromium",
        default=shutil.which("chromium"),
        help="the Chromium binary (default: chromium on PATH)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    if args.png and not (args.chromium and shutil.which(args.chromium)):
        raise ScreenshotError(
            f"Chromium not found ({args.chromium or 'no chromium on PATH'}): "
            "install it or pass --chromium PATH"
        )
    page = build_page(plan_markdown())
    if not args.png and not args.html:
        sys.stdout.write(page)
        return
    with tempfile.TemporaryDirectory(prefix="modaliac-page-") as temp:
        html_path = args.html or Path(temp) / "plan.html"
        html_path.write_text(page, encoding="utf-8")
        if args.png:
            screenshot(args.chromium, html_path, args.png)


def main(argv: Sequence[str] | None = None) -> int:
    """Without ``--html`` or ``--png`` the page goes to stdout."""
    args = parse_args(argv)
    try:
        run(args)
    except ScreenshotError as exc:
        print(f"plan_screenshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
