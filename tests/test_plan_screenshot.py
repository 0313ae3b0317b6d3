"""scripts/plan_screenshot.py without Chromium: the plan it shows, the page it builds, the trim.

The screenshot itself (docs/plan-comment.png) needs a real Chromium; these tests cover what
decides how it looks, and drive the screenshot loop with a stand-in Chromium.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from helpers import import_file
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


shot = import_file(ROOT / "scripts" / "plan_screenshot.py", "modaliac_plan_screenshot")


@pytest.fixture(scope="module")
def markdown() -> str:
    text: str = shot.plan_markdown()
    return text


@pytest.fixture(scope="module")
def page(markdown: str) -> str:
    text: str = shot.build_page(markdown)
    return text


def test_the_plan_shows_an_update_creates_a_delete_costs_and_a_warning(markdown: str) -> None:
    first, _, heading = markdown.splitlines()[:3]
    assert first.startswith("> **Offline plan**")  # the screenshot's plan is made offline
    assert heading.startswith("### modaliac plan")
    assert heading.endswith("3 to create, 1 to update, 0 to replace, 1 to delete.")
    assert "| `~` | `gemma-chat` | update | `specs/chat-gpu-fallback.yaml` |" in markdown
    assert "| `-` | `qwen-chat` | delete | `specs/qwen-chat-sleep-snapshot.yaml` |" in markdown
    # One warm container: the only app with an idle floor (the figures follow the price table).
    assert re.search(
        r"\| `staging/bge-m3-embedding` \| L40S \| \$[\d.]+ \| \$[1-9][\d,.]+ \|", markdown
    )
    assert re.search(
        r"\n- kalm-embedding: specs/kalm-embedding-gpu-snapshot.yaml:"
        r"\d+:\d+: model.revision: \[MDL001\]",
        markdown,
    )


def test_the_plan_is_offline_repeatable_and_leaves_the_process_as_it_was(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, markdown: str
) -> None:
    # Credentials and a server that refuses connections: an online plan would fail here.
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-not-a-real-token")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-not-a-real-secret")
    monkeypatch.setenv("MODAL_SERVER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MODALIAC_STATE", str(tmp_path / "elsewhere.json"))
    monkeypatch.chdir(tmp_path)
    before = dict(os.environ)
    assert shot.plan_markdown() == markdown
    assert dict(os.environ) == before
    assert Path.cwd() == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_the_page_is_a_complete_document_that_loads_nothing(page: str) -> None:
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
    assert page.endswith("</body>\n</html>\n")
    assert page.count("<body>") == page.count("</body>") == 1
    assert "<style>" in page and "width: 880px" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    for outside in ("<script", "<link", "<img", "@import", "url("):
        assert outside not in page


def test_the_cost_summary_and_the_changes_are_real_tables(page: str) -> None:
    assert page.count("<table>") == 2
    assert "<thead>\n<tr>\n<th>app</th>\n<th>GPU</th>\n" in page
    row = r"<tr>\n<td><code>staging/bge-m3-embedding</code></td>\n<td>L40S</td>\n"
    assert re.search(row + r'<td style="text-align:right">\$[\d,.]+</td>\n', page)
    assert "<td><code>-</code></td>\n<td><code>qwen-chat</code></td>\n<td>delete</td>" in page


def test_each_app_has_a_folded_section_and_the_first_one_is_open(page: str) -> None:
    summaries = re.findall(r"<details( open)?><summary><code>([^<]+)</code>: (\w+)", page)
    assert summaries == [
        (" open", "gemma-chat", "update"),
        ("", "kalm-embedding", "create"),
        ("", "minilm-embedding", "create"),
        ("", "staging/bge-m3-embedding", "create"),
        ("", "qwen-chat", "delete"),
    ]
    assert page.count("</details>") == 5


def test_diff_blocks_colour_removed_and_added_lines(page: str) -> None:
    assert (
        '<pre><code class="language-diff"><span class="deleted">- engine.max_num_seqs = 32\n'
        '</span><span class="inserted">+ engine.max_num_seqs = 64\n</span>'
    ) in page
    assert '<span class="inserted">+ app = &quot;kalm-embedding&quot;\n</span>' not in page
    assert '<span class="inserted">+ app = "kalm-embedding"\n</span>' in page
    assert '<span class="deleted">- snapshot = "sleep"\n</span>' in page


def test_highlighting_escapes_and_leaves_other_languages_alone() -> None:
    assert shot.highlight_diff('+ a = "<b>"\n  same\n', "diff", "") == (
        '<span class="inserted">+ a = "&lt;b&gt;"\n</span>  same\n'
    )
    assert shot.highlight_diff("+ x\n", "python", "") == ""
    assert '<pre><code class="language-python">+ x &lt; 1\n</code></pre>' in shot.build_page(
        "```python\n+ x < 1\n```\n"
    )


def test_a_newline_in_a_comment_paragraph_is_a_line_break() -> None:
    """GitHub comments (not README files) keep single newlines: two warnings, two lines."""
    body = shot.render_markdown("> **Warning:** one\n> **Warning:** two\n")
    assert "<strong>Warning:</strong> one<br />\n<strong>Warning:</strong> two" in body


def test_main_writes_the_page_without_chromium(tmp_path: Path, page: str) -> None:
    out = tmp_path / "plan.html"
    assert shot.main(["--html", str(out), "--chromium", str(tmp_path / "none")]) == 0
    assert out.read_text(encoding="utf-8") == page


def test_a_missing_chromium_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "plan.png"
    assert shot.main(["--png", str(png), "--chromium", str(tmp_path / "no-chromium")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"plan_screenshot: Chromium not found ({tmp_path / 'no-chromium'}): "
        "install it or pass --chromium PATH\n"
    )
    assert not png.exists()


def test_chromium_loads_only_the_local_page_with_a_throwaway_profile(tmp_path: Path) -> None:
    page = tmp_path / "plan page.html"
    command = shot.chromium_command("chromium", page, tmp_path / "p.png", tmp_path / "prof", 900)
    assert command[0] == "chromium"
    assert command[-1] == page.as_uri() and command[-1].startswith("file:///")
    for flag in ("--headless", "--disable-background-networking", "--no-first-run"):
        assert flag in command
    assert f"--user-data-dir={tmp_path / 'prof'}" in command
    assert "--window-size=1000,900" in command
    assert f"--screenshot={tmp_path / 'p.png'}" in command


FAKE_CHROMIUM = """\
import sys
from PIL import Image

args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
width, height = (int(n) for n in args["--window-size"].split(","))
with open(args["--screenshot"] + ".heights", "a") as log:
    log.write(f"{height}\\n")
image = Image.new("RGB", (width, height), "white")
# The page is 3000 pixels tall: a window shorter than that shows content to its last row.
image.paste((30, 30, 30), (40, 40, width - 40, min(height, 3000)))
image.save(args["--screenshot"])
"""


def test_the_screenshot_grows_the_window_until_the_page_fits_then_trims(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text(f"#!{sys.executable}\n{FAKE_CHROMIUM}", encoding="utf-8")
    fake.chmod(0o755)
    png = tmp_path / "plan.png"
    assert shot.main(["--png", str(png), "--chromium", str(fake)]) == 0
    assert (tmp_path / "plan.png.heights").read_text().split() == ["2000", "4000"]
    with Image.open(png) as image:
        assert image.size == (1000, 3000 + shot.BOTTOM_MARGIN)
        assert image.mode == "P"  # stored with a palette: a small file for the docs


def test_trim_keeps_a_margin_below_the_last_content_row(tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    image = Image.new("RGB", (200, 500), "white")
    image.paste((0, 0, 0), (10, 10, 190, 120))
    image.save(png)
    assert shot.content_bottom(png) == 120
    shot.trim(png, 120)
    with Image.open(png) as trimmed:
        assert trimmed.size == (200, 120 + shot.BOTTOM_MARGIN)
        assert trimmed.convert("RGB").getpixel((100, 119)) == (0, 0, 0)
