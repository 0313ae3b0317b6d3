"""What apply, destroy and rollback show while they run: plain events off a terminal, JSON
events with ``--json``, Modal's build output (``--logs``, ``.modaliac/logs/ADDRESS.log``, the
tail on failure), and the live display on a pseudo-terminal. Against the local Modal API with
the real ``modal`` client."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
from pathlib import Path

import pexpect
import pytest
import test_apply
from test_apply import cli

from modal_iac.commands.progress import AppLogs, JsonDisplay
from modal_iac.local_api import LocalModalServer

ROOT = Path(__file__).resolve().parent.parent
project = test_apply.project  # the fixture: specs/ with the same two apps as test_apply's
PHASES = ["deploying", "uploading", "building image", "creating functions", "publishing"]
BUILD_LOG = [
    "Step 1/2: RUN pip install vllm==0.33.0\n",
    "Successfully installed vllm-0.33.0\n",
    "HF_TOKEN=hf_QmX7pL2vR9sT4wY6zB8cD1eF3gH5jK\n",  # a token a build step printed
    "Step 2/2: snapshot\n",
]
CONTROL = re.compile(r"\x1b\[(?P<arg>[0-9;?]*)(?P<final>[A-Za-z])|\x1b\][^\x07]*\x07")


def logs_in(project: Path) -> dict[str, str]:
    """Each file under ``.modaliac/logs`` with what it holds, for the message of a test that
    expects none: a failure seen once under load then says what was written."""
    folder = project / ".modaliac/logs"
    if not folder.exists():
        return {}
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


def phases_of(out: str, address: str) -> list[str]:
    """The phases the plain events show for ``address``, in order, times dropped."""
    found = re.findall(rf"^  {re.escape(address)}: (.*?)(?: \(\d+\.\ds\))?$", out, re.M)
    return list(found)


def test_plain_events_show_each_apps_phases_in_order(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    for address in ("kalm-embedding", "minilm-embedding"):
        # Both apps deploy at once in one process: each phase is told of the right app.
        assert phases_of(out, address) == [*PHASES, "deployed v1"], out
    assert re.search(r"^  kalm-embedding: deployed v1 \(\d+\.\ds\)$", out, re.M)
    assert "\x1b[" not in out  # not a terminal: no live display
    assert "Apply finished: 2 succeeded, 0 failed." in out
    # Nothing built, nothing failed: no log.
    # Nothing was built and nothing failed: no app has a log. (The SDK's own log, apply-*.log,
    # takes what the whole process prints and warns; in a test process a thread another test
    # left running may write there, once in a while, so it is shown but not counted.)
    logs = logs_in(project)
    assert [name for name in logs if not name.startswith("apply-")] == [], logs


def test_json_events_own_stdout(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "apply", "--yes", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]  # nothing else on stdout
    assert events and all(set(e) == {"app", "phase", "elapsed", "status"} for e in events)
    kalm = [e for e in events if e["app"] == "kalm-embedding"]
    assert [e["phase"] for e in kalm] == [*PHASES, "deployed v1"]
    assert [e["status"] for e in kalm] == ["running"] * len(PHASES) + ["ok"]
    assert all(isinstance(e["elapsed"], float) for e in kalm)
    assert kalm[-1]["elapsed"] >= kalm[0]["elapsed"]
    # The plan and the summary go to stderr.
    assert "+ create kalm-embedding" in err and "Apply finished: 2 succeeded" in err


def test_json_without_yes_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "apply", "--json")
    assert code == 2
    assert out == ""
    assert "--json needs --yes" in err


def test_build_output_is_kept_per_app_and_streamed_with_logs(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.image_build_logs = BUILD_LOG
    code, out, err = cli(capsys, "apply", "--yes", "--logs", "--parallel", "1")
    assert code == 0, err
    assert len(modal_api.state.requests("ImageJoinStreaming")) >= 2  # both apps built
    # Several apps deploy: each streamed line names its app.
    assert "kalm-embedding | Step 1/2: RUN pip install vllm==0.33.0" in out
    assert "minilm-embedding | Successfully installed vllm-0.33.0" in out
    assert "hf_QmX7pL2vR9sT4wY6zB8cD1eF3gH5jK" not in out
    assert "(a value that looks like a Hugging Face token, not shown)" in out
    log = (project / ".modaliac/logs/kalm-embedding.log").read_text()
    assert "Step 1/2: RUN pip install vllm==0.33.0\nSuccessfully installed" in log
    assert "hf_QmX7pL2vR9sT4wY6zB8cD1eF3gH5jK" not in log
    assert re.search(r"\[modaliac \S+Z\] publishing\n", log)


def test_without_logs_build_output_only_reaches_the_file(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.image_build_logs = BUILD_LOG
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 0, err
    assert "Step 1/2" not in out + err
    assert "Step 2/2: snapshot" in (project / ".modaliac/logs/minilm-embedding.log").read_text()


def test_failed_build_prints_the_log_path_and_its_last_lines(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.image_build_logs = BUILD_LOG
    modal_api.state.image_build_fails = True
    code, out, err = cli(capsys, "apply", "--yes")
    assert code == 1
    assert phases_of(out, "kalm-embedding")[-2:] == ["building image", "failed"]
    assert "kalm-embedding: its log is .modaliac/logs/kalm-embedding.log; the last lines:" in out
    tail = out.split("kalm-embedding: its log is")[1].split("\n")[1:11]
    assert "  | Step 2/2: snapshot" in tail
    assert "  | HF_TOKEN=(a value that looks like a Hugging Face token, not shown)" in tail
    assert any("failed: Modal: Image build for im-" in line for line in tail), tail
    assert "hf_QmX7" not in out + err
    assert len(err.splitlines()) == 1  # stderr keeps its one line


def test_a_failure_without_build_output_keeps_the_apps_phases(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    modal_api.state.faults.fail_nth("AppPublish", 1)
    code, out, _ = cli(capsys, "apply", "--yes", "--parallel", "1")
    assert code == 1
    log = project / ".modaliac/logs/kalm-embedding.log"
    lines = log.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines[:-1]] == [*PHASES, "failed"]
    assert lines[-1].endswith("AppPublish: injected by the local Modal API")
    assert "] failed: " in lines[-1]
    assert f"  | {lines[-1]}" in out.splitlines()
    assert not (project / ".modaliac/logs/minilm-embedding.log").exists()  # it succeeded


def test_destroy_and_rollback_show_their_phases(
    project: Path, modal_api: LocalModalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    (project / "specs/minilm.yaml").write_text(
        (project / "specs/minilm.yaml").read_text().replace("gpu: L4", "gpu: T4", 1)
    )
    assert cli(capsys, "apply", "--yes")[0] == 0

    code, out, err = cli(capsys, "rollback", "minilm-embedding", "--yes", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["phase"], e["status"]) for e in events] == [
        ("rolling back", "running"),
        ("rolled back to v3", "ok"),
    ]
    assert "rolled back to the previous version, now v3" in err

    code, out, err = cli(capsys, "destroy", "minilm-embedding", "--yes")
    assert code == 0, err
    assert phases_of(out, "minilm-embedding") == ["stopping", "stopped"]

    code, out, err = cli(capsys, "destroy", "kalm-embedding", "--yes", "--json")
    assert code == 0, err
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["running", "ok"]


def test_a_failed_rollback_ends_its_line_as_failed(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "apply", "--yes")[0] == 0
    code, out, err = cli(capsys, "rollback", "minilm-embedding")  # there is no previous version
    assert code == 1
    assert phases_of(out, "minilm-embedding") == ["rolling back", "failed"]
    assert "No previous version to roll back to" in err


def test_phases_of_other_stages_show_and_end_with_the_outcome(tmp_path: Path) -> None:
    """verify reports "verifying" and "rolling back" through the same events; its final word
    is the outcome, which ends the line."""
    out = io.StringIO()
    logs = AppLogs(tmp_path)
    display = JsonDisplay(out, logs)
    for phase in ("deploying", "publishing", "deployed v2", "verifying", "rolling back"):
        display.event("kalm-embedding", phase)
    display.event("minilm-embedding", "deployed v1")
    display.event("e5-embedding", "rolled back to v1")  # after a failed verification
    display.settle({"kalm-embedding": "failed", "minilm-embedding": "ok", "e5-embedding": "failed"})
    display.close()
    assert not logs.written("kalm-embedding")  # nothing to read yet: no file
    logs.note("kalm-embedding", "failed: /health answered 503", keep=True)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["app"], e["phase"], e["status"]) for e in events] == [
        ("kalm-embedding", "deploying", "running"),
        ("kalm-embedding", "publishing", "running"),
        ("kalm-embedding", "deployed v2", "ok"),
        ("kalm-embedding", "verifying", "running"),
        ("kalm-embedding", "rolling back", "running"),
        ("minilm-embedding", "deployed v1", "ok"),
        ("e5-embedding", "rolled back to v1", "ok"),
        ("kalm-embedding", "failed", "failed"),  # settled by the outcomes
        ("e5-embedding", "failed", "failed"),
    ]
    # The line's clock runs from its first phase, through verifying, to the outcome.
    assert events[7]["elapsed"] >= events[2]["elapsed"] >= events[0]["elapsed"]
    kept = (tmp_path / "kalm-embedding.log").read_text()
    assert "] rolling back\n" in kept and kept.endswith("] failed: /health answered 503\n")


# -- the live display, on a pseudo-terminal --------------------------------------------------


def spawn(project: Path, *argv: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40", PYTHONPATH=str(ROOT))
    return pexpect.spawn(
        sys.executable,
        ["-m", "modal_iac.cli", *argv],
        cwd=str(project),
        env=env,
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(40, 120),
        timeout=60,
    )


def screen(raw: str) -> str:
    """What a terminal shows after ``raw``: text, carriage returns, new lines, and the few
    controls rich's live display sends (cursor up, erase line); colours are dropped."""
    rows: list[list[str]] = [[]]
    row = col = 0
    parts: list[str | re.Match[str]] = []
    at = 0
    for match in CONTROL.finditer(raw):
        parts += [raw[at : match.start()], match]
        at = match.end()
    parts.append(raw[at:])
    for part in parts:
        if isinstance(part, str):
            for char in part:
                if char == "\r":
                    col = 0
                elif char == "\n":
                    row, col = row + 1, 0
                    rows.extend([] for _ in range(row + 1 - len(rows)))
                else:
                    line = rows[row]
                    line.extend(" " * (col - len(line)))
                    line[col : col + 1] = [char]
                    col += 1
        elif part["final"] == "A":
            row = max(0, row - int(part["arg"] or 1))
        elif part["final"] == "K":
            rows[row] = rows[row][:col] if part["arg"] in ("", "0") else []
    return "\n".join("".join(line).rstrip() for line in rows)


def test_live_display_on_a_terminal(project: Path, modal_api: LocalModalServer) -> None:
    modal_api.state.image_build_logs = BUILD_LOG
    child = spawn(project, "apply", "--yes")
    child.expect(pexpect.EOF)
    child.close()
    raw = child.before
    shown = screen(raw)
    assert child.exitstatus == 0, shown
    assert "\x1b[" in raw  # rich drew it: cursor moves and colours
    assert "  kalm-embedding: deploying" not in shown  # not the plain events
    rows = re.findall(r"^(ok|FAILED|CANCELLED)\s+(\S+)\s+(deployed v\d+)\s+(\d+\.\ds)", shown, re.M)
    assert {(mark, app, phase) for mark, app, phase, _ in rows} == {
        ("ok", "kalm-embedding", "deployed v1"),
        ("ok", "minilm-embedding", "deployed v1"),
    }
    assert "Apply finished: 2 succeeded, 0 failed." in shown
    assert "Step 1/2" not in shown  # build output went to the log, not the screen


def test_live_display_streams_build_output_above_the_lines_with_logs(
    project: Path, modal_api: LocalModalServer
) -> None:
    modal_api.state.image_build_logs = BUILD_LOG
    child = spawn(project, "apply", "--yes", "--logs", "--parallel", "1")
    child.expect(pexpect.EOF)
    child.close()
    shown = screen(child.before)
    assert child.exitstatus == 0, shown
    lines = shown.splitlines()
    streamed = [i for i, line in enumerate(lines) if line.startswith("kalm-embedding | ")]
    assert [lines[i] for i in streamed][:2] == [
        "kalm-embedding | Step 1/2: RUN pip install vllm==0.33.0",
        "kalm-embedding | Successfully installed vllm-0.33.0",
    ]
    table = [i for i, line in enumerate(lines) if re.match(r"ok\s+kalm-embedding\s+deployed", line)]
    assert table and max(streamed) < table[-1]  # the log scrolled above the live lines
    assert "hf_QmX7" not in shown


def test_live_display_shows_phases_and_the_summary_after_ctrl_c(
    project: Path, modal_api: LocalModalServer
) -> None:
    modal_api.state.faults.add("AppPublish", delay=30.0, times=2)  # both apps hang publishing
    child = spawn(project, "apply", "--yes")
    child.expect("publishing")  # the live line shows the phase while it lasts
    child.expect("publishing")
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF)
    child.close()
    shown = screen(child.before)
    assert child.exitstatus == 130, shown
    assert re.search(r"^CANCELLED\s+(kalm|minilm)-embedding\s+cancelled", shown, re.M), shown
    assert "Apply interrupted: 0 succeeded, 0 failed, 2 cancelled." in shown


def test_each_address_has_its_own_log_file(tmp_path: Path) -> None:
    """An environment is a folder: ``dev/x`` and an app named ``dev__x`` keep apart."""
    logs = AppLogs(tmp_path)
    for address in ("dev/x", "dev__x", "x", "prod/x"):
        logs.write(address, f"built {address}\n")
    logs.close()
    assert (tmp_path / "dev" / "x.log").read_text() == "built dev/x\n"
    assert (tmp_path / "dev__x.log").read_text() == "built dev__x\n"
    assert (tmp_path / "x.log").read_text() == "built x\n"
    assert (tmp_path / "prod" / "x.log").read_text() == "built prod/x\n"
