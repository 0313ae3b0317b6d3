"""Malformed specs and the exact line each must produce: `path:line:col: key.path: message`.

Every case goes through the real CLI (`modaliac validate` and `modaliac render -o DIR`): exit
status 1, exactly the expected lines on stderr, no traceback, nothing on stdout and nothing
written. Positions are 1-based and point at the offending key or value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modal_iac.cli import main
from modal_iac.errors import SpecError, SpecErrors
from modal_iac.loading.load import load_spec
from modal_iac.loading.parse import MAX_SPEC_BYTES

ROOT = Path(__file__).resolve().parent.parent

# A small valid spec the cases edit; its line numbers are the ones the messages cite.
VALID = """\
app: demo
model:
  id: BAAI/bge-small-en-v1.5
  task: embed
gpu: L4
"""
OPEN_HTTP = "surfaces:\n  http:\n    open: true\n"
CLASS_AND_OPEN_HTTP = "surfaces:\n  class: true\n  http:\n    open: true\n"
# Shaped like real credentials (random tail, mixed case and digits); none of them is real.
HF_TOKEN = "hf_" + "Xq7RvN2mKp9LtB4wZc8YdF3jHs6GaE1uQo"
API_KEY = "sk-proj-" + "Q3mN8vXr2LkP9sT4wYb7Zc1D"
# One of each credential format modaliac knows, none of them real: (id, value, what it is).
TOKENS = [
    (
        "hugging-face-letters-only",
        "hf_" + "QWxYzAbRtUvPlMnKjHgFdSaEqWrTyUiOpL",
        "a Hugging Face token",
    ),
    (
        "openai-project",
        "sk-proj-" + "Q3mN8vXr2LkP9sT4wYb7Zc1D_h8J-kL2mN4pQ6rS8tU0vW2xY4",
        "an API key (sk-...)",
    ),
    (
        "openai-legacy",
        "sk-" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3h",
        "an API key (sk-...)",
    ),
    (
        "anthropic",
        "sk-ant-api03-" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5-AbCdEfAA",
        "an Anthropic API key",
    ),
    ("aws-access-key", "AKIA" + "IOSFODNN7EXAMPLE", "an AWS access key"),
    ("aws-temporary-key", "ASIA" + "Y34FZKBOKMUTVV7A", "an AWS access key"),
    ("gitlab", "glpat-" + "xY3_kP9-mN2qR8sT4vWz", "a GitLab token"),
    ("google-api-key", "AIza" + "SyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tU1v", "a Google API key"),
    ("github-classic", "ghp_" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5", "a GitHub token"),
    (
        "github-fine-grained",
        "github_pat_" + "11ABCDEFG0123456789ab_cDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "a GitHub token",
    ),
    ("slack-bot", "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "a Slack token"),
    ("stripe-live", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "a Stripe API key"),
    (
        "json-web-token",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
        + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw",
        "a JSON web token",
    ),
    ("pem-private-key", "-----BEGIN " + "RSA PRIVATE KEY-----", "a private key"),
    ("modal-token-id", "ak-" + "Qx7RvN2mKp9LtB4wZc8YdF", "a Modal token"),
    ("modal-token-secret", "as-" + "Zc8YdF3jHs6GaE1uQoXq7R", "a Modal token"),
]
# Secret names that share a credential's prefix, and must stay accepted.
SECRET_NAMES = [
    "hf-token",
    "huggingface",
    "sk-embedding-cache",
    "sk-embedding-cache-2024-v2",
    "sk-proj-embedding-cache",
    "sk-ant-team-notes",
    "sk_test_payment_cache",
    "hf_ProductionReadTokenForEmbeddings",
    "as-production-cache",
    "ak-embedding-cache-2024",
    "glpat-rotation-notes",
    "github-pat-ci",
    "xoxb-bot-token",
    "openai-api-key",
    "aws-credentials",
]
TO_IMAGE = "remove it: what reaches the image build is one line of printable text"
ONE_LINE = "remove it: this setting is one line of printable text"
IMAGE_HINT = (
    'expected a container image like "nvidia/cuda:13.0.3-devel-ubuntu22.04": '
    "[registry[:port]/]name[:tag][@digest], the name in lower case"
)
KINDS = 'expected one of "service", "gateway"'
HF_ID_HINT = (
    'expected a Hugging Face repository id like "org/name", each part at most 96 characters'
)
TOKEN_BOUND = 'expected a token count of at most 1000m, like 8192 or "32k"'
PARAMETERS_BOUND = 'expected a parameter count of at most 100000B, like "12B" or "560M"'
MEMORY_BOUND = 'expected a memory size of at most 1024TiB, like "64GiB" or "512MiB"'
DURATION_BOUND = 'expected a duration of at most 8760h (a year), like "5m", "90s" or "1h"'
TOO_DEEP = "nested more than 64 levels deep; flatten this value (no setting needs that many levels)"
SECRET_HINT = (
    'specs name secrets, never hold their values: run "modal secret create NAME KEY=..." '
    "and list NAME under secrets"
)
GPU_TYPES = (
    "T4, L4, A10, L40S, A100, A100-40GB, A100-80GB, RTX-PRO-6000, H100, H100!, H200, B200, B200+"
)
MODAL_NAMES = "Modal names use letters, digits, '-', '_' and '.', at most 64 characters"
# A small valid gateway spec; the cases replace the second model's short name (line 8).
GATEWAY = """\
kind: gateway
name: gw
gpus: [L4]
models:
  - id: org/alpha
    name: alpha
  - id: org/beta
    name: beta
"""
ROUTER = "router:\n  api_key_secret: gw-key\n"
OWN_SOFTWARE = (
    "is read by the container's own software (the shell, Python, Hugging Face, Modal, vLLM or "
    "CUDA); name a variable of its own, e.g. API_KEY"
)
NO_KEY = (
    "has no api_key_secret; name the Modal secret that holds the API key, or set open: true to "
    "serve without one"
)
BOTH = "open: true serves without an API key, but api_key_secret names one; keep one of the two"
HTTP_NO_KEY = (
    "has no api_key_secret; name the Modal secret that holds the API key, set proxy_auth: true "
    "for Modal's proxy tokens, or set open: true to serve without either"
)
OPEN_AND_PROXY = (
    "open: true serves without auth, but proxy_auth: true asks for Modal's proxy tokens; keep one "
    "of the two"
)
IMPORT_PLACEHOLDER_HINT = (
    "is the placeholder `modaliac import --generate-spec` writes (Modal does not report the "
    "model): put the Hugging Face id of the model the app serves, e.g. Qwen/Qwen3-8B"
)
KEYWORD = "a Python keyword"
BUILTIN = "a Python builtin the generated code must not shadow"
IN_GATEWAY = "a name the generated gateway module defines itself"
IN_SERVICE = "a name a generated service module defines itself"


def edit(old: str, new: str) -> str:
    """VALID with one piece of text replaced."""
    assert old in VALID
    return VALID.replace(old, new, 1)


def short_name(name: str, class_name: str, reason: str, *, quoted: bool = False) -> Case:
    """GATEWAY with the second model's short name replaced, and the line it must produce."""
    written = f'"{name}"' if quoted else name
    return Case(
        f"gateway-short-name-{name}",
        GATEWAY.replace("name: beta", f"name: {written}") + ROUTER,
        f"spec.yaml:8:11: models[1].name: {name!r} would name its model class {class_name}, "
        f"{reason}; choose another short name",
    )


def nested(levels: int, inner: str = "1", flow: str = "[]") -> str:
    """``levels`` flow collections, one inside the other: ``[[[1]]]`` or ``{a: {a: 1}}``."""
    if flow == "{}":
        return "{a: " * levels + inner + "}" * levels
    return flow[0] * levels + inner + flow[1] * levels


def alias_bomb() -> str:
    """Nine levels of nine aliases each: a few hundred bytes that expand to 9**9 strings."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for parent, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + parent] * 9)}]")
    return "\n".join(lines) + "\n"


PLAIN_NUMBER = (
    "write this number in plain decimal digits (YAML readers disagree on 010, 0x10, "
    "0o7 and 1_000), or quote it if it is text"
)

MODALIACS_TAGS = (
    "'managed-by' and tags starting 'modaliac-' are the tags modaliac sets on every deploy; "
    "name the label otherwise"
)


class Case(NamedTuple):
    id: str
    text: str | bytes
    expected: str | tuple[str, ...]  # each line, without the trailing newline


CASES = [
    # -- YAML itself -----------------------------------------------------------------------
    Case(
        "yaml-unclosed-bracket",
        "app: demo\nmodel: [BAAI/bge-small-en-v1.5, embed\n",
        'spec.yaml:2:8: this "[" is never closed with "]"',
    ),
    Case(
        "yaml-tab-indent",
        "app: demo\nmodel:\n\tid: BAAI/bge-small-en-v1.5\n",
        "spec.yaml:3:1: a tab character; indent YAML with spaces",
    ),
    Case(
        "yaml-stray-colon",
        "app: demo\ngpu: L4\n  task: embed\n",
        'spec.yaml:3:7: unexpected ":"; quote text that holds ": ", or fix the indentation',
    ),
    Case(
        "yaml-unclosed-quote",
        'app: "demo\nmodel: x\n',
        "spec.yaml:1:6: this quoted text is never closed",
    ),
    Case(
        "yaml-tag-refused",
        edit("app: demo", 'app: !!python/object/apply:os.system ["echo hi"]'),
        'spec.yaml:1:6: app: YAML tag "!!python/object/apply:os.system" is not allowed in specs; '
        "write plain values (quote text)",
    ),
    Case(
        "yaml-core-tag-refused-too",
        edit("app: demo", "app: !!int demo"),
        'spec.yaml:1:6: app: YAML tag "!!int" is not allowed in specs; '
        "write plain values (quote text)",
    ),
    Case(
        "yaml-alias-bomb",
        alias_bomb(),
        "spec.yaml:5:4: e: anchors and aliases expand to more than 20000 values; "
        "write the values out",
    ),
    Case(  # no anchors here: the line does not speak of them
        "file-of-too-many-values",
        VALID + "labels:\n" + "".join(f"  l{i}: x\n" for i in range(10_001)),
        "spec.yaml:7:3: labels: holds more than 20000 keys and values; no spec needs that many, "
        "so remove what this one does not use",
    ),
    Case(
        "yaml-duplicate-key",
        VALID + "app: other\n",
        "spec.yaml:6:1: app: duplicate key (first at line 1); each key may appear once",
    ),
    Case(
        "yaml-date-is-not-text",
        VALID + "engine:\n  args:\n    since: 2024-01-01\n",
        'spec.yaml:8:12: engine.args.since: "2024-01-01" reads as a date; put it in quotes to '
        "keep it as text",
    ),
    Case(
        "yaml-nan",
        VALID + "engine:\n  args:\n    temperature: .nan\n",
        "spec.yaml:8:18: engine.args.temperature: infinity and NaN are not allowed; write a number",
    ),
    Case(
        "label-names-modaliacs-tag",
        VALID + "labels:\n  Managed-By: me\n  modaliac-spec: x\n",
        (
            "spec.yaml:7:3: labels.Managed-By: " + MODALIACS_TAGS,
            "spec.yaml:8:3: labels.modaliac-spec: " + MODALIACS_TAGS,
        ),
    ),
    Case(
        "yaml-number-octal-looking",
        VALID + "engine:\n  args:\n    max-num-seqs: 010\n",
        "spec.yaml:8:19: engine.args.max-num-seqs: " + PLAIN_NUMBER,
    ),
    Case(
        "yaml-number-hex",
        VALID + "engine:\n  args:\n    max-num-seqs: 0x10\n",
        "spec.yaml:8:19: engine.args.max-num-seqs: " + PLAIN_NUMBER,
    ),
    Case(
        "yaml-number-underscores",
        VALID + "engine:\n  args:\n    max-num-seqs: 1_000\n",
        "spec.yaml:8:19: engine.args.max-num-seqs: " + PLAIN_NUMBER,
    ),
    Case(
        "yaml-number-float-underscores",
        VALID + "engine:\n  args:\n    max-num-seqs: 1_0.5\n",
        "spec.yaml:8:19: engine.args.max-num-seqs: " + PLAIN_NUMBER,
    ),
    # -- nesting: one limit (64 levels) on every path, located where it is crossed ----------
    # engine.args.x is three levels down: inside 62 lists, its 1 is at level 65.
    Case(
        "deep-flow-lists",
        VALID + "engine:\n  args:\n    x: " + nested(62) + "\n",
        f"spec.yaml:8:70: engine.args.x: {TOO_DEEP}",
    ),
    Case(
        "deep-flow-lists-past-the-c-stack",  # the C loader crashed the interpreter on this one
        VALID + "engine:\n  args:\n    x: " + nested(100_000) + "\n",
        f"spec.yaml:8:70: engine.args.x: {TOO_DEEP}",
    ),
    Case(
        "deep-flow-mappings",
        VALID + "engine:\n  args:\n    x: " + nested(500, flow="{}") + "\n",
        f"spec.yaml:8:253: engine.args.x.a.a: {TOO_DEEP}",
    ),
    Case(
        "deep-block-mappings",
        VALID + "labels:\n" + "".join("  " * level + "a:\n" for level in range(1, 300)),
        f"spec.yaml:70:129: labels.a.a.a.a: {TOO_DEEP}",
    ),
    Case(
        "deep-block-lists",
        VALID + "engine:\n  args:\n    x:\n      " + "- " * 50_000 + "1\n",
        f"spec.yaml:9:131: engine.args.x: {TOO_DEEP}",
    ),
    Case(
        "deep-mixed-lists-and-mappings",
        VALID + "engine:\n  args:\n    x: " + "[{a: " * 40 + "1" + "}]" * 40 + "\n",
        f"spec.yaml:8:160: engine.args.x: {TOO_DEEP}",  # the key "a" is at level 65
    ),
    Case(
        "deep-in-an-environment-override",
        VALID + "environments:\n  prod:\n    engine:\n      args:\n        x: " + nested(200),
        f"spec.yaml:10:72: environments.prod.engine.args.x: {TOO_DEEP}",
    ),
    Case(  # 30 lists around an alias of 40 more: the line points at the anchored value
        "deep-through-aliases",
        VALID + "engine:\n  args:\n    a: &a " + nested(40) + "\n    b: " + nested(30, "*a") + "\n",
        f"spec.yaml:8:8: engine.args.b: {TOO_DEEP}",
    ),
    Case(
        "yaml-key-not-text",
        VALID + "labels:\n  1: search\n",
        'spec.yaml:7:3: labels: key "1" must be text; put it in quotes',
    ),
    # -- the file as a whole ---------------------------------------------------------------
    Case(
        "file-empty",
        "",
        "spec.yaml: the file is empty; a spec is a mapping with app, model and gpu",
    ),
    Case(
        "file-only-comments",
        "# a spec, one day\n   # indented\n\n",
        "spec.yaml: the file holds only comments; a spec is a mapping with app, model and gpu",
    ),
    Case(
        "document-is-a-list",
        "- app: demo\n- gpu: L4\n",
        "spec.yaml:1:1: expected a mapping of keys (app, model, gpu, ...), found a list",
    ),
    Case(
        "document-is-a-scalar",
        "demo\n",
        'spec.yaml:1:1: expected a mapping of keys (app, model, gpu, ...), found "demo"',
    ),
    Case(
        "several-documents",
        VALID + "---\n" + VALID,
        "spec.yaml:6:1: a second YAML document starts here; put one spec in each file",
    ),
    Case(
        "not-utf8",
        # Columns count characters: the two bytes of "é" before the bad byte make one column.
        b"app: demo\nmodel:\n  id: \xc3\xa9-caf\xe9/x\n",
        "spec.yaml:3:12: byte 0xe9 is not UTF-8; save the file as UTF-8",
    ),
    Case(
        "file-too-big",
        "# padding\n" * (MAX_SPEC_BYTES // 10 + 1),
        f"spec.yaml: the file is {(MAX_SPEC_BYTES // 10 + 1) * 10} bytes; "
        "a spec file is at most 256 KiB",
    ),
    # -- the kind: one line about it, whatever the keys ------------------------------------
    Case(
        "kind-misspelt-gateway",
        GATEWAY.replace("kind: gateway", "kind: gatway"),
        f'spec.yaml:1:7: kind: {KINDS}, got "gatway"; did you mean "gateway"?',
    ),
    Case(
        "kind-capitalised",
        GATEWAY.replace("kind: gateway", "kind: Gateway"),
        f'spec.yaml:1:7: kind: {KINDS}, got "Gateway"; did you mean "gateway"?',
    ),
    Case(
        "kind-misspelt-gateway-on-a-service",  # five unrelated lines, once
        "kind: gatway\n" + VALID,
        f'spec.yaml:1:7: kind: {KINDS}, got "gatway"; did you mean "gateway"?',
    ),
    Case(
        "kind-plural",
        "kind: services\n" + VALID,
        f'spec.yaml:1:7: kind: {KINDS}, got "services"; did you mean "service"?',
    ),
    Case(
        "kind-plural-on-a-gateway",
        GATEWAY.replace("kind: gateway", "kind: gateways"),
        f'spec.yaml:1:7: kind: {KINDS}, got "gateways"; did you mean "gateway"?',
    ),
    Case("kind-a-number", "kind: 3\n" + VALID, f"spec.yaml:1:7: kind: {KINDS}, got 3"),
    Case("kind-a-list", "kind: [gateway]\n" + VALID, f"spec.yaml:1:1: kind: {KINDS}, got a list"),
    Case("kind-empty", "kind:\n" + VALID, f"spec.yaml:1:1: kind: {KINDS}, got nothing (null)"),
    Case(
        "kind-unrelated-word",
        GATEWAY.replace("kind: gateway", "kind: router"),
        f'spec.yaml:1:7: kind: {KINDS}, got "router"',
    ),
    # -- keys ------------------------------------------------------------------------------
    Case(
        "unknown-top-level-key",
        edit("gpu: L4", "gpus: L4"),
        'spec.yaml:5:1: gpus: unknown key "gpus"; did you mean "gpu"?',
    ),
    Case(
        "unknown-nested-key",
        VALID + "scaling:\n  scaledown_windw: 5m\n",
        'spec.yaml:7:3: scaling.scaledown_windw: unknown key "scaledown_windw"; '
        'did you mean "scaledown_window"?',
    ),
    Case(
        "missing-model-task",
        edit("  task: embed\n", ""),
        'spec.yaml:2:1: model: missing required key "task" (embed or generate)',
    ),
    Case(
        "missing-gpu",
        edit("gpu: L4\n", ""),
        'spec.yaml:1:1: missing required key "gpu" (a Modal GPU type, as in "L4" or "H100:2")',
    ),
    # -- types -----------------------------------------------------------------------------
    Case(
        "string-for-int",
        VALID + 'engine:\n  max_num_seqs: "256"\n',
        'spec.yaml:7:17: engine.max_num_seqs: expected a whole number, got "256"; '
        "remove the quotes",
    ),
    Case(  # a null has no text of its own: the line is the key's, not the next key's
        "null-for-text",
        edit("app: demo", "app:"),
        "spec.yaml:1:1: app: expected text, got nothing (null)",
    ),
    Case(  # YAML reads the digit as text with or without quotes: no "remove the quotes"
        "arabic-indic-digit-for-int",
        VALID + 'engine:\n  max_num_seqs: "\u0663"\n',
        'spec.yaml:7:17: engine.max_num_seqs: expected a whole number, got "\u0663"',
    ),
    Case(
        "list-for-mapping",
        VALID + "scaling: [1, 2]\n",
        "spec.yaml:6:1: scaling: expected a mapping, got a list",
    ),
    Case(
        "yes-for-bool",
        edit("  task: embed", "  task: embed\n  trust_remote_code: yes"),
        'spec.yaml:5:22: model.trust_remote_code: expected true or false, got "yes"; '
        "write true or false",
    ),
    Case(
        "number-for-text",
        VALID + "image:\n  python: 3.12\n",
        'spec.yaml:7:11: image.python: expected text, got 3.12; put it in quotes: "3.12"',
    ),
    # -- values ----------------------------------------------------------------------------
    Case(
        "bad-literal",
        edit("task: embed", "task: embedd"),
        'spec.yaml:4:9: model.task: expected one of "embed", "generate", got "embedd"; '
        'did you mean "embed"?',
    ),
    Case(
        "bad-spec-version",
        "version: 2\n" + VALID,
        "spec.yaml:1:10: version: expected 1, got 2",
    ),
    Case(
        "bad-duration",
        VALID + "scaling:\n  timeout: 5 minutes\n",
        'spec.yaml:7:12: scaling.timeout: expected a duration like "5m", "90s" or "1h"',
    ),
    Case(
        "bad-gpu-type",
        edit("gpu: L4", "gpu: H10"),
        f"spec.yaml:5:6: gpu: unknown GPU type 'H10'; did you mean 'H100'? "
        f"Modal offers {GPU_TYPES}",
    ),
    Case(
        "bad-gpu-count",
        edit("gpu: L4", "gpu: H100:9"),
        "spec.yaml:5:6: gpu: H100 takes 1 to 8 GPUs per container, got 9",
    ),
    Case(
        "gpu-count-not-a-number",
        edit("gpu: L4", "gpu: H100:x"),
        "spec.yaml:5:6: gpu: GPU count 'x' is not a whole number, as in H100:2",
    ),
    # -- numbers past any sane size, and digits that are not ASCII --------------------------
    Case(
        "token-count-of-400-nines",  # float() of it is infinite
        edit("  task: embed", '  task: embed\n  max_model_len: "' + "9" * 400 + 'k"'),
        f"spec.yaml:5:18: model.max_model_len: {TOKEN_BOUND}",
    ),
    Case(
        "token-count-of-5000-digits",  # int() of it is refused by Python
        edit("  task: embed", '  task: embed\n  max_model_len: "' + "9" * 5000 + '"'),
        f"spec.yaml:5:18: model.max_model_len: {TOKEN_BOUND}",
    ),
    Case(
        "token-count-a-yaml-number-of-99-digits",
        edit("  task: embed", "  task: embed\n  max_model_len: " + "9" * 99),
        f"spec.yaml:5:18: model.max_model_len: {TOKEN_BOUND}",
    ),
    Case(
        "token-count-in-fullwidth-digits",
        edit("  task: embed", '  task: embed\n  max_model_len: "\uff13\uff12k"'),
        'spec.yaml:5:18: model.max_model_len: expected a token count like 8192 or "32k"',
    ),
    Case(
        "parameters-of-400-nines",
        edit("  task: embed", '  task: embed\n  parameters: "' + "9" * 400 + 'B"'),
        f"spec.yaml:5:15: model.parameters: {PARAMETERS_BOUND}",
    ),
    Case(
        "parameters-a-huge-float",
        edit("  task: embed", "  task: embed\n  parameters: 1.0e+300"),
        f"spec.yaml:5:15: model.parameters: {PARAMETERS_BOUND}",
    ),
    Case(
        "parameters-negative",
        edit("  task: embed", "  task: embed\n  parameters: -5"),
        'spec.yaml:5:15: model.parameters: expected a parameter count above 0, like "12B" or '
        '"560M"',
    ),
    Case(
        "memory-of-400-digits",
        VALID + "resources:\n  memory: " + "9" * 400 + "GiB\n",
        f"spec.yaml:7:11: resources.memory: {MEMORY_BOUND}",
    ),
    Case(
        "memory-a-yaml-number-of-99-digits",
        VALID + "resources:\n  memory: " + "9" * 99 + "\n",
        f"spec.yaml:7:11: resources.memory: {MEMORY_BOUND}",
    ),
    Case(
        "memory-in-arabic-indic-digits",
        VALID + "resources:\n  memory: \u0666\u0664GiB\n",
        'spec.yaml:7:11: resources.memory: expected a memory size like "64GiB" or "512MiB" '
        "(or MiB as a number)",
    ),
    Case(
        "duration-of-5000-digits",
        VALID + 'scaling:\n  timeout: "' + "9" * 5000 + 'h"\n',
        f"spec.yaml:7:12: scaling.timeout: {DURATION_BOUND}",
    ),
    Case(
        "duration-a-yaml-number-of-99-digits",
        VALID + "scaling:\n  timeout: " + "9" * 99 + "\n",
        f"spec.yaml:7:12: scaling.timeout: {DURATION_BOUND}",
    ),
    Case(
        "duration-past-a-year",
        VALID + "scaling:\n  startup_timeout: 9999h\n",
        f"spec.yaml:7:20: scaling.startup_timeout: {DURATION_BOUND}",
    ),
    Case(
        "duration-in-fullwidth-digits",
        VALID + "scaling:\n  timeout: \uff15m\n",
        'spec.yaml:7:12: scaling.timeout: expected a duration like "5m", "90s" or "1h"',
    ),
    Case(
        "gpu-count-superscript",  # str.isdigit() says yes, int() says no
        edit("gpu: L4", "gpu: 'L4:\u00b2'"),
        "spec.yaml:5:6: gpu: GPU count '\u00b2' is not a whole number, as in L4:2",
    ),
    Case(
        "gpu-count-arabic-indic",  # int() reads this one as 2
        edit("gpu: L4", "gpu: 'L4:\u0662'"),
        "spec.yaml:5:6: gpu: GPU count '\u0662' is not a whole number, as in L4:2",
    ),
    Case(
        "gpu-count-of-5000-digits",
        edit("gpu: L4", "gpu: 'L4:" + "9" * 5000 + "'"),
        "spec.yaml:5:6: gpu: L4 takes 1 to 8 GPUs per container, got a 5000-digit number",
    ),
    Case(
        "gpu-as-a-mapping-of-an-unknown-type",  # was a KeyError in the GPU fit
        edit("gpu: L4", "gpu: [{type: X100, count: 2}]"),
        "spec.yaml:5:14: gpu[0].type: unknown GPU type 'X100'; did you mean 'H100'? "
        f"Modal offers {GPU_TYPES}",
    ),
    Case(
        "gpu-as-a-mapping-with-too-many",
        edit("gpu: L4", "gpu: [{type: h100, count: 99}]"),
        "spec.yaml:5:27: gpu[0].count: H100 takes 1 to 8 GPUs per container, got 99",
    ),
    Case(
        "fit-suggests-no-more-gpus-than-modal-offers",  # A10 comes 4 to a container at most
        "app: demo\nmodel:\n  id: org/m\n  task: generate\n  parameters: 70B\ngpu: A10\n",
        "spec.yaml:6:6: gpu: org/m does not fit A10: it needs 140.0 GB of weights, and A10 gives "
        "vLLM 21.6 GB (0.9 of 24 GB, 1.5 GB reserve); use A100-80GB:2 (the cheapest that fits, "
        "$5.00 per running hour)",
    ),
    Case(
        "architecture-layers-zero",
        edit(
            "  task: embed", "  task: embed\n  architecture: {layers: 0, kv_heads: 8, head_dim: 64}"
        ),
        "spec.yaml:5:26: model.architecture.layers: must be more than 0, got 0",
    ),
    Case(
        "architecture-missing-head-dim",
        edit("  task: embed", "  task: embed\n  architecture: {layers: 36, kv_heads: 8}"),
        'spec.yaml:5:3: model.architecture: missing required key "head_dim"',
    ),
    Case(
        "architecture-attention-heads-is-not-a-key",
        edit(
            "  task: embed",
            "  task: embed\n  architecture: {layers: 36, kv_heads: 8, head_dim: 64, heads: 32}",
        ),
        'spec.yaml:5:57: model.architecture.heads: unknown key "heads"; did you mean "kv_heads"?',
    ),
    Case(
        "architecture-quoted-count",
        edit(
            "  task: embed",
            '  task: embed\n  architecture: {layers: "36", kv_heads: 8, head_dim: 64}',
        ),
        'spec.yaml:5:26: model.architecture.layers: expected a whole number, got "36"; remove '
        "the quotes",
    ),
    Case(
        "architecture-fractional-heads",
        edit(
            "  task: embed",
            "  task: embed\n  architecture: {layers: 36, kv_heads: 8.5, head_dim: 64}",
        ),
        "spec.yaml:5:40: model.architecture.kv_heads: expected a whole number, got 8.5",
    ),
    Case(
        "architecture-not-a-mapping",
        edit("  task: embed", "  task: embed\n  architecture: 36"),
        "spec.yaml:5:17: model.architecture: expected a mapping, got 36",
    ),
    Case(
        "architecture-head-dim-out-of-range",
        edit(
            "  task: embed",
            "  task: embed\n  architecture: {layers: 36, kv_heads: 8, head_dim: 99999999}",
        ),
        "spec.yaml:5:53: model.architecture.head_dim: must be at most 100000, got 99999999",
    ),
    Case(
        "gateway-architecture-negative-layers",
        "kind: gateway\nname: gw\nmodels:\n  - id: Qwen/Qwen3-8B\n    name: q\n"
        "    architecture: {layers: -1, kv_heads: 8, head_dim: 128}\ngpus: [L4]\n",
        "spec.yaml:6:28: models[0].architecture.layers: must be more than 0, got -1",
    ),
    Case(
        "engine-version-in-fullwidth-digits",
        VALID + 'engine:\n  version: "\uff10.33.0"\n',
        'spec.yaml:7:12: engine.version: expected a version like "0.33.0", got "\uff10.33.0"',
    ),
    Case(
        "python-version-in-arabic-indic-digits",
        VALID + 'image:\n  python: "3.\u0661\u0662"\n',
        'spec.yaml:7:11: image.python: expected a Python version like "3.12", in quotes, got '
        '"3.\u0661\u0662"',
    ),
    Case(
        "gateway-engine-version-not-a-version",
        GATEWAY.replace("gpus: [L4]", "gpus: [L4]\nengine_version: latest"),
        'spec.yaml:4:17: engine_version: expected a version like "0.33.0", got "latest"',
    ),
    Case(
        "model-id-is-a-url",
        edit("BAAI/bge-small-en-v1.5", "https://huggingface.co/BAAI/bge"),
        f'spec.yaml:3:7: model.id: {HF_ID_HINT}, got "https://huggingface.co/BAAI/bge"',
    ),
    Case(
        "model-id-too-long",  # its cache path was too long for the file system: an OSError
        edit("BAAI/bge-small-en-v1.5", "Qwen/" + "9" * 300),
        f'spec.yaml:3:7: model.id: {HF_ID_HINT}, got "Qwen/{"9" * 32}..."',
    ),
    Case(
        "model-id-import-placeholder",
        edit("BAAI/bge-small-en-v1.5", "FILL-IN/model-id  # fill in"),
        f'spec.yaml:3:7: model.id: "FILL-IN/model-id" {IMPORT_PLACEHOLDER_HINT}',
    ),
    Case(
        "model-id-import-placeholder-edited",
        edit("BAAI/bge-small-en-v1.5", "fill-in/Qwen3"),
        f'spec.yaml:3:7: model.id: "fill-in/Qwen3" {IMPORT_PLACEHOLDER_HINT}',
    ),
    Case(
        "model-id-import-placeholder-quoted",
        edit("BAAI/bge-small-en-v1.5", '"Fill-In/model-id"'),
        f'spec.yaml:3:7: model.id: "Fill-In/model-id" {IMPORT_PLACEHOLDER_HINT}',
    ),
    Case(
        "gateway-model-id-too-long",
        GATEWAY.replace("org/beta", "o" * 97 + "/beta"),
        f'spec.yaml:7:9: models[1].id: {HF_ID_HINT}, got "{"o" * 37}..."',
    ),
    Case(
        "mount-path-not-absolute",
        VALID + "volumes:\n  root/cache: my-cache\n",
        'spec.yaml:7:3: volumes["root/cache"]: expected an absolute path in the container, '
        'like "/root/.cache/huggingface", got "root/cache"',
    ),
    Case(
        "label-breaks-tag-rules",
        VALID + "labels:\n  team name: search\n",
        "spec.yaml:7:3: labels[\"team name\"]: app tags use letters, digits, '-', '_' and '.', "
        "at most 63 characters",
    ),
    Case(
        "app-name-breaks-modal-rules",
        edit("app: demo", "app: my demo!"),
        f"spec.yaml:1:6: app: {MODAL_NAMES}",
    ),
    Case(
        "app-name-too-long",
        edit("app: demo", "app: " + "a" * 65),
        f"spec.yaml:1:6: app: {MODAL_NAMES}",
    ),
    Case(
        "class-name-is-a-keyword",
        VALID + "surfaces:\n  class:\n    name: class\n",
        f"spec.yaml:8:11: surfaces.class.name: 'class' is {KEYWORD}; choose another name",
    ),
    Case(
        "class-name-is-the-servers",
        VALID + "surfaces:\n  class:\n    name: Server\n",
        f"spec.yaml:8:11: surfaces.class.name: 'Server' is {IN_SERVICE}; choose another name",
    ),
    Case(
        "class-name-is-a-builtin",
        VALID + "surfaces:\n  class:\n    name: Exception\n",
        f"spec.yaml:8:11: surfaces.class.name: 'Exception' is {BUILTIN}; choose another name",
    ),
    Case(
        "function-name-is-reserved",
        VALID + "surfaces:\n  downloader:\n    name: modal\n",
        f"spec.yaml:8:11: surfaces.downloader.name: 'modal' is {IN_SERVICE}; choose another name",
    ),
    Case(
        "function-name-is-the-app",
        VALID + "surfaces:\n  downloader:\n    name: app\n",
        f"spec.yaml:8:11: surfaces.downloader.name: 'app' is {IN_SERVICE}; choose another name",
    ),
    Case(
        "function-name-is-a-builtin",
        VALID + "surfaces:\n  downloader:\n    name: open\n",
        f"spec.yaml:8:11: surfaces.downloader.name: 'open' is {BUILTIN}; choose another name",
    ),
    Case(
        "function-name-is-print",
        VALID + "surfaces:\n  downloader:\n    name: print\n",
        f"spec.yaml:8:11: surfaces.downloader.name: 'print' is {BUILTIN}; choose another name",
    ),
    # A gateway's short names become class names: Router, None, GPU, Exception ...
    short_name("router", "Router", IN_GATEWAY),
    short_name("none", "None", KEYWORD),
    short_name("true", "True", KEYWORD, quoted=True),  # unquoted, YAML reads a boolean
    short_name("false", "False", KEYWORD, quoted=True),
    short_name("g-p-u", "GPU", IN_GATEWAY),
    short_name("exception", "Exception", BUILTIN),
    Case(
        "class-name-not-camel-case",
        VALID + "surfaces:\n  class:\n    name: embedder\n",
        "spec.yaml:8:11: surfaces.class.name: expected a CamelCase Python class name with a "
        'lower-case letter, like "Embedder", got "embedder"',
    ),
    # -- text that reaches the image build, and other one-line text ------------------------
    Case(
        "image-base-with-a-line-break",  # became a RUN command of the image on Modal
        VALID + 'image:\n  base: "ubuntu:22.04\\nRUN touch /x"\n',
        f"spec.yaml:7:9: image.base: holds a line break (U+000A) at character 13; {TO_IMAGE}",
    ),
    Case(
        "image-base-with-a-line-separator",
        VALID + 'image:\n  base: "ubuntu:22.04\\u2028RUN touch /x"\n',
        f"spec.yaml:7:9: image.base: holds a line separator (U+2028) at character 13; {TO_IMAGE}",
    ),
    Case(
        "image-base-with-a-c1-control",
        VALID + 'image:\n  base: "ubuntu:22.04\\x85"\n',
        f"spec.yaml:7:9: image.base: holds a control character (U+0085) at character 13; "
        f"{TO_IMAGE}",
    ),
    Case(
        "image-base-upper-case-name",
        VALID + "image:\n  base: Ubuntu:22.04\n",
        f'spec.yaml:7:9: image.base: {IMAGE_HINT}, got "Ubuntu:22.04"',
    ),
    Case(
        "image-base-with-dockerfile-words",
        VALID + 'image:\n  base: "ubuntu:22.04 AS build"\n',
        f'spec.yaml:7:9: image.base: {IMAGE_HINT}, got "ubuntu:22.04 AS build"',
    ),
    Case(
        "image-base-empty-path-component",
        VALID + "image:\n  base: docker.io//ubuntu\n",
        f'spec.yaml:7:9: image.base: {IMAGE_HINT}, got "docker.io//ubuntu"',
    ),
    Case(
        "image-base-short-digest",
        VALID + "image:\n  base: ubuntu@sha256:abc\n",
        f'spec.yaml:7:9: image.base: {IMAGE_HINT}, got "ubuntu@sha256:abc"',
    ),
    Case(
        "image-package-with-a-line-break",
        VALID + 'image:\n  packages: ["torch", "numpy\\nRUN touch /x"]\n',
        f"spec.yaml:7:23: image.packages[1]: holds a line break (U+000A) at character 6; "
        f"{TO_IMAGE}",
    ),
    Case(
        "image-package-empty",
        VALID + 'image:\n  packages: [""]\n',
        "spec.yaml:7:14: image.packages[0]: must not be empty",
    ),
    Case(
        "image-env-with-a-line-break",  # became a RUN command of the image on Modal
        VALID + 'image:\n  env:\n    MODE: "fast\\nRUN touch /x"\n',
        f"spec.yaml:8:11: image.env.MODE: holds a line break (U+000A) at character 5; {TO_IMAGE}",
    ),
    Case(
        "image-env-with-nul",
        VALID + 'image:\n  env:\n    MODE: "fast\\0"\n',
        f"spec.yaml:8:11: image.env.MODE: holds a NUL character (U+0000) at character 5; "
        f"{TO_IMAGE}",
    ),
    Case(
        "image-env-with-delete",
        VALID + 'image:\n  env:\n    MODE: "fast\\x7f"\n',
        f"spec.yaml:8:11: image.env.MODE: holds a control character (U+007F) at character 5; "
        f"{TO_IMAGE}",
    ),
    Case(
        "image-env-with-a-carriage-return",
        VALID + 'image:\n  env:\n    MODE: "fast\\r"\n',
        f"spec.yaml:8:11: image.env.MODE: holds a carriage return (U+000D) at character 5; "
        f"{TO_IMAGE}",
    ),
    Case(
        "engine-version-with-a-line-break",
        VALID + 'engine:\n  version: "0.33.0\\nRUN touch /x"\n',
        'spec.yaml:7:12: engine.version: expected a version like "0.33.0", got '
        '"0.33.0\\nRUN touch /x"',
    ),
    Case(
        "gateway-engine-version-with-a-line-break",
        GATEWAY.replace("gpus: [L4]", 'gpus: [L4]\nengine_version: "0.33.0\\nRUN x"'),
        'spec.yaml:4:17: engine_version: expected a version like "0.33.0", got "0.33.0\\nRUN x"',
    ),
    Case(
        "revision-with-a-line-break",
        edit("  task: embed", '  task: embed\n  revision: "main\\nx"'),
        f"spec.yaml:5:13: model.revision: holds a line break (U+000A) at character 5; {ONE_LINE}",
    ),
    Case(
        "served-name-with-a-tab",
        edit("  task: embed", '  task: embed\n  served_name: "my\\tmodel"'),
        f"spec.yaml:5:16: model.served_name: holds a tab (U+0009) at character 3; {ONE_LINE}",
    ),
    Case(
        "mount-path-with-a-line-break",
        VALID + 'volumes:\n  "/root/cache\\nx": my-cache\n',
        'spec.yaml:7:3: volumes["/root/cache\\nx"]: holds a line break (U+000A) at character 12; '
        + ONE_LINE,
    ),
    Case(
        "gateway-revision-with-crlf",
        GATEWAY.replace("    name: beta", '    name: beta\n    revision: "main\\r\\nRUN x"'),
        f"spec.yaml:9:15: models[1].revision: holds a carriage return (U+000D) at character 5; "
        f"{ONE_LINE}",
    ),
    Case(
        "gateway-app-name-with-a-paragraph-separator",
        GATEWAY.replace("gpus: [L4]", 'gpus: [L4]\napp_name: "{name}-{gpu}\\u2029"'),
        f"spec.yaml:4:11: app_name: holds a paragraph separator (U+2029) at character 13; "
        f"{ONE_LINE}",
    ),
    Case(  # the same checks on a merged environment, pointed at the override's lines
        "in-an-environment-override",
        VALID
        + 'environments:\n  prod:\n    image:\n      env:\n        MODE: "a\\nRUN x"\n'
        + '    model:\n      max_model_len: "'
        + "9" * 400
        + 'k"\n',
        (
            "spec.yaml:10:15: environments.prod.image.env.MODE: holds a line break (U+000A) at "
            f"character 2; {TO_IMAGE}",
            f"spec.yaml:12:22: environments.prod.model.max_model_len: {TOKEN_BOUND}",
        ),
    ),
    Case(
        "app-name-with-a-final-line-break",  # a regex "$" lets a final line break through
        edit("app: demo", 'app: "demo\\n"'),
        f"spec.yaml:1:6: app: {MODAL_NAMES}",
    ),
    # -- secrets: the line names the place, never the value --------------------------------
    Case(
        "token-in-secrets",
        VALID + f"secrets: [{HF_TOKEN}]\n",
        f"spec.yaml:6:11: secrets[0]: this looks like a Hugging Face token; {SECRET_HINT}",
    ),
    Case(
        "api-key-in-secrets",
        VALID + f"secrets:\n  - huggingface\n  - {API_KEY}\n",
        f"spec.yaml:8:5: secrets[1]: this looks like an API key (sk-...); {SECRET_HINT}",
    ),
    Case(
        "token-in-image-env",
        VALID + f"image:\n  env:\n    HF_TOKEN: {HF_TOKEN}\n",
        f"spec.yaml:8:15: image.env.HF_TOKEN: this looks like a Hugging Face token; {SECRET_HINT}",
    ),
    Case(
        "api-key-in-engine-args",
        VALID + f"engine:\n  args:\n    api_token: {API_KEY}\n",
        "spec.yaml:8:16: engine.args.api_token: this looks like an API key (sk-...); "
        + SECRET_HINT,
    ),
    Case(
        "token-as-a-key",
        VALID + f"image:\n  env:\n    {HF_TOKEN}: x\n",
        f"spec.yaml:8:5: image.env: this looks like a Hugging Face token; {SECRET_HINT}",
    ),
    # Where a token could reach a line before the secrets check: a key path, ruamel's words.
    Case(
        "token-after-a-hyphen",  # a name part of its own: "gemma-" does not hide it
        VALID + f"secrets: [gemma-{HF_TOKEN}]\n",
        f"spec.yaml:6:11: secrets[0]: this looks like a Hugging Face token; {SECRET_HINT}",
    ),
    Case(
        "token-as-a-duplicate-key",
        VALID + f"image:\n  env:\n    {HF_TOKEN}: a\n    {HF_TOKEN}: b\n",
        "spec.yaml:9:5: image.env[(a value that looks like a Hugging Face token, not shown)]: "
        "duplicate key (first at line 8); each key may appear once",
    ),
    Case(
        "token-as-an-undefined-alias",
        edit("app: demo", f"app: *{HF_TOKEN}"),
        "spec.yaml:1:6: alias *(a value that looks like a Hugging Face token, not shown) has no "
        "anchor &(a value that looks like a Hugging Face token, not shown) before it",
    ),
    Case(
        "token-as-a-tag",
        edit("app: demo", f"app: !{HF_TOKEN} demo"),
        "spec.yaml:1:6: app: YAML tag (a value that looks like a Hugging Face token, not shown) "
        "is not allowed in specs; write plain values (quote text)",
    ),
    # Every format, as the revision (whose MDL001 warning once printed what went undetected).
    *(
        Case(
            f"token-{name}",
            edit("  task: embed", f'  task: embed\n  revision: "{token}"'),
            f"spec.yaml:5:13: model.revision: this looks like {what}; {SECRET_HINT}",
        )
        for name, token, what in TOKENS
    ),
    Case(
        "key-value-in-secrets",
        VALID + "secrets: [HF_TOKEN=abc123]\n",
        f"spec.yaml:6:11: secrets[0]: this looks like a KEY=VALUE secret; {SECRET_HINT}",
    ),
    # -- settings that do not work together ------------------------------------------------
    Case(
        "gpu-snapshot-with-two-gpus",
        edit("gpu: L4", "gpu: H100:2\nsnapshot: gpu"),
        "spec.yaml:6:11: snapshot: snapshot gpu with 2 GPUs per container (tensor parallel) is "
        "not supported by GPU memory snapshots; use one GPU or snapshot: none [MDL002]",
    ),
    Case(
        "sleep-snapshot-with-two-gpus",
        edit("gpu: L4", "gpu: H100:2\nsnapshot: sleep"),
        "spec.yaml:6:11: snapshot: snapshot sleep with 2 GPUs per container (tensor parallel) is "
        "not supported by GPU memory snapshots; use one GPU or snapshot: none [MDL002]",
    ),
    Case(
        "max-below-min-containers",
        VALID + "scaling:\n  min_containers: 3\n  max_containers: 1\n",
        "spec.yaml:8:19: scaling.max_containers: 1 is below min_containers (3)",
    ),
    Case(
        "scaledown-window-too-long",
        VALID + "scaling:\n  scaledown_window: 2h\n",
        "spec.yaml:7:21: scaling.scaledown_window: Modal accepts a scaledown window from 2s to "
        "1h, got 2h",
    ),
    Case(
        "scaledown-window-too-short",
        VALID + "scaling:\n  scaledown_window: 1s\n",
        "spec.yaml:7:21: scaling.scaledown_window: Modal accepts a scaledown window from 2s to "
        "1h, got 1s",
    ),
    Case(
        "memory-in-decimal-units",
        VALID + "resources:\n  memory: 64GB\n",
        'spec.yaml:7:11: resources.memory: expected a memory size like "64GiB" or "512MiB" '
        '(or MiB as a number); did you mean "64GiB"?',
    ),
    Case(
        "memory-in-decimal-megabytes",
        VALID + "resources:\n  memory: 512MB\n",
        'spec.yaml:7:11: resources.memory: expected a memory size like "64GiB" or "512MiB" '
        '(or MiB as a number); did you mean "512MiB"?',
    ),
    Case(
        "memory-in-lower-case-g",
        VALID + "resources:\n  memory: 1.5g\n",
        'spec.yaml:7:11: resources.memory: expected a memory size like "64GiB" or "512MiB" '
        '(or MiB as a number); did you mean "1.5GiB"?',
    ),
    Case(
        "task-chat-means-generate",
        edit("task: embed", "task: chat"),
        'spec.yaml:4:9: model.task: expected one of "embed", "generate", got "chat"; '
        'chat and completion models use "generate"',
    ),
    Case(
        "task-text-generation-means-generate",
        edit("task: embed", "task: text-generation"),
        'spec.yaml:4:9: model.task: expected one of "embed", "generate", got "text-generation"; '
        'chat and completion models use "generate"',
    ),
    Case(
        "task-feature-extraction-means-embed",
        edit("task: embed", "task: Feature-Extraction"),
        'spec.yaml:4:9: model.task: expected one of "embed", "generate", got '
        '"Feature-Extraction"; embedding and retrieval models use "embed"',
    ),
    Case(
        "gpu-variant-guesses-its-family",
        edit("gpu: L4", "gpu: H100-NVL"),
        f"spec.yaml:5:6: gpu: unknown GPU type 'H100-NVL'; did you mean 'H100'? "
        f"Modal offers {GPU_TYPES}",
    ),
    Case(
        "gpu-variant-guesses-its-family-in-a-list",
        edit("gpu: L4", "gpu: [L4, a100-pcie:1]"),
        f"spec.yaml:5:11: gpu[1]: unknown GPU type 'a100-pcie'; did you mean 'A100'? "
        f"Modal offers {GPU_TYPES}",
    ),
    Case(
        "memory-below-modal-minimum",
        VALID + "resources:\n  memory: 64\n",
        "spec.yaml:7:11: resources.memory: Modal's smallest memory request is 128 MiB, got 64",
    ),
    Case(
        "cpu-below-modal-minimum",
        VALID + "resources:\n  cpu: 0.1\n",
        "spec.yaml:7:8: resources.cpu: must be at least 0.125, got 0.1",
    ),
    # -- placement and runtime settings ---------------------------------------------------
    *(
        Case(f"region-{name}", VALID + f"placement:\n  region: {text}\n", f"spec.yaml:7:11: {msg}")
        for name, text, msg in [
            (
                "unknown",
                "mars",
                "placement.region: 'mars' is not a Modal region; use a broad region (us, eu, "
                "ap, uk, ca, me, sa, af, mx) or a narrow one (us-east, eu-west, ap-south, ...)",
            ),
            (
                "misspelt",
                "us-wets",
                "placement.region: 'us-wets' is not a Modal region; did you mean 'us-west'? use "
                "a broad region (us, eu, ap, uk, ca, me, sa, af, mx) or a narrow one (us-east, "
                "eu-west, ap-south, ...)",
            ),
            (
                "upper-case",
                "US",
                "placement.region: 'US' is not a Modal region; did you mean 'us'? use a broad "
                "region (us, eu, ap, uk, ca, me, sa, af, mx) or a narrow one (us-east, eu-west, "
                "ap-south, ...)",
            ),
            (
                "a-number",
                "5",
                'placement.region: expected a region like "eu", or a list of regions',
            ),
        ]
    ),
    Case(
        "region-listed-twice",
        VALID + "placement:\n  region: [us, us]\n",
        "spec.yaml:7:16: placement.region[1]: 'us' is listed twice",
    ),
    Case(
        "region-empty-list",
        VALID + "placement:\n  region: []\n",
        "spec.yaml:7:3: placement.region: name at least one region, or leave region out",
    ),
    Case(
        "cloud-unknown",
        VALID + "placement:\n  cloud: azure\n",
        'spec.yaml:7:10: placement.cloud: expected one of "aws", "gcp", "oci", "auto", got "azure"',
    ),
    Case(
        "cloud-upper-case",
        VALID + "placement:\n  cloud: AWS\n",
        'spec.yaml:7:10: placement.cloud: expected one of "aws", "gcp", "oci", "auto", got "AWS"; '
        'did you mean "aws"?',
    ),
    Case(
        "routing-region-a-container-region",
        VALID + "placement:\n  routing_region: eu\n",
        'spec.yaml:7:19: placement.routing_region: expected one of "us-east", "us-west", '
        '"eu-west", "ap-south", got "eu"',
    ),
    Case(
        "placement-unknown-key",
        VALID + "placement:\n  zone: us\n",
        'spec.yaml:7:3: placement.zone: unknown key "zone"',
    ),
    *(
        Case(
            f"ephemeral-disk-{name}",
            VALID + f"resources:\n  ephemeral_disk: {text}\n",
            f"spec.yaml:7:19: resources.ephemeral_disk: {msg}",
        )
        for name, text, msg in [
            ("above-3-tib", "4TiB", "Modal's ephemeral disk is from 1MiB to 3TiB, got 4TiB"),
            ("zero", "0", "Modal's ephemeral disk is from 1MiB to 3TiB, got 0 MiB"),
            (
                "not-a-size",
                "lots",
                'expected a memory size like "64GiB" or "512MiB" (or MiB as a number)',
            ),
        ]
    ),
    *(
        Case(f"retries-{name}", VALID + f"retries: {text}\n", f"spec.yaml:6:10: retries: {msg}")
        for name, text, msg in [
            ("negative", "-1", "must be at least 0, got -1"),
            ("above-modal-maximum", "11", "must be at most 10, got 11"),
            ("a-boolean", "true", "expected a retry count like 3, or a mapping with max_retries"),
            ("quoted", '"3"', "expected a retry count like 3, or a mapping with max_retries"),
        ]
    ),
    *(
        Case(
            f"retries-{name}",
            VALID + f"retries:\n  max_retries: 3\n  {text}\n",
            f"spec.yaml:8:{column}: retries.{msg}",
        )
        for name, text, column, msg in [
            (
                "backoff-above-10",
                "backoff_coefficient: 20",
                24,
                "backoff_coefficient: must be at most 10.0, got 20.0",
            ),
            (
                "initial-delay-above-a-minute",
                "initial_delay: 2m",
                18,
                "initial_delay: Modal waits from 0s to 60s before a retry, got 120s",
            ),
            (
                "max-delay-zero",
                "max_delay: 0s",
                14,
                "max_delay: Modal caps the delay between retries at 1s to 60s, got 0s",
            ),
            (
                "initial-above-max-delay",
                "initial_delay: 50s\n  max_delay: 10s",
                18,
                "initial_delay: 50s is above max_delay (10s)",
            ),
        ]
    ),
    Case(
        "retries-without-max-retries",
        VALID + "retries:\n  backoff_coefficient: 2\n",
        'spec.yaml:6:1: retries: missing required key "max_retries"',
    ),
    Case(
        "retries-without-the-python-class",
        VALID + "retries: 2\nsurfaces:\n  class: false\n  http:\n    open: true\n",
        "spec.yaml:6:10: retries: applies to calls of the Python class, which this spec does not "
        "have (surfaces.class: false); Modal never retries HTTP requests",
    ),
    Case(
        "target-concurrency-above-concurrency",
        VALID + "scaling:\n  concurrency: 4\n  target_concurrency: 8\n",
        "spec.yaml:8:23: scaling.target_concurrency: 8 is above concurrency (4), the most inputs "
        "a container takes; lower it or raise concurrency",
    ),
    Case(
        "target-concurrency-zero",
        VALID + "scaling:\n  concurrency: 4\n  target_concurrency: 0\n",
        "spec.yaml:8:23: scaling.target_concurrency: must be at least 1, got 0",
    ),
    Case(
        "target-concurrency-without-http",
        VALID + "scaling:\n  target_concurrency: 1\n",
        "spec.yaml:7:23: scaling.target_concurrency: applies to the HTTP server, which this spec "
        "does not have",
    ),
    *(
        Case(
            f"custom-domain-{name}",
            VALID + f"surfaces:\n  http:\n    open: true\n    custom_domains: {text}\n",
            f"spec.yaml:9:{column}: surfaces.http.custom_domains{msg}",
        )
        for name, text, column, msg in [
            (
                "a-url",
                "[https://api.example.com]",
                22,
                "[0]: 'https://api.example.com' is not a domain name; give the host only, like "
                "api.example.com",
            ),
            (
                "upper-case",
                "[API.example.com]",
                22,
                "[0]: write the domain name in lower case: 'api.example.com'",
            ),
            (
                "one-label",
                "[localhost]",
                22,
                "[0]: 'localhost' is not a domain name like api.example.com",
            ),
            (
                "leading-hyphen",
                "[-bad.example.com]",
                22,
                "[0]: '-bad.example.com' is not a domain name like api.example.com",
            ),
            (
                "modal-run",
                "[a.modal.run]",
                22,
                "[0]: modal.run is Modal's own domain; name a domain of yours",
            ),
            (
                "listed-twice",
                "[a.example.com, a.example.com]",
                37,
                "[1]: 'a.example.com' is listed twice",
            ),
            (
                "not-a-list",
                "api.example.com",
                21,
                ': expected a list, got "api.example.com"; write [api.example.com] for a list '
                "of one",
            ),
            ("a-number", "[7]", 22, '[0]: expected text, got 7; put it in quotes: "7"'),
        ]
    ),
    Case(
        "engine-arg-managed-elsewhere",
        VALID + "engine:\n  args:\n    enable_prefix_caching: true\n    max_model_len: 4096\n",
        "spec.yaml:9:5: engine.args.max_model_len: modaliac sets this from model.max_model_len; "
        "set it there instead",
    ),
    # -- engine.args against vLLM's own argument table (modal_iac/vllm_args.py) ----------
    Case(
        "engine-arg-abbreviation",
        VALID + "engine:\n  args:\n    api_ke: x\n",
        "spec.yaml:8:5: engine.args.api_ke: not a vLLM 0.33.0 engine argument; did you mean "
        "api_key? modaliac sets that from surfaces.http.api_key_secret",
    ),
    Case(
        "engine-arg-typo",
        VALID + "engine:\n  args:\n    enable_prefix_cachin: true\n",
        "spec.yaml:8:5: engine.args.enable_prefix_cachin: not a vLLM 0.33.0 engine argument; "
        "did you mean enable_prefix_caching?",
    ),
    Case(
        "engine-arg-guided",
        VALID + "engine:\n  args:\n    guided_decoding_backend: xgrammar\n",
        "spec.yaml:8:5: engine.args.guided_decoding_backend: not a vLLM 0.33.0 engine argument: "
        "structured outputs are configured with structured_outputs_config, and guided_* request "
        "fields are silently ignored",
    ),
    Case(
        "engine-arg-unknown",
        VALID + "engine:\n  args:\n    zzz_unknown: 1\n",
        "spec.yaml:8:5: engine.args.zzz_unknown: not a vLLM 0.33.0 engine argument; `vllm "
        "serve --help=all` lists them (by their flag, --with-dashes)",
    ),
    Case(
        "engine-arg-config-file",
        VALID + "engine:\n  args:\n    config: more.yaml\n",
        "spec.yaml:8:5: engine.args.config: vllm serve --config reads further arguments from "
        "a file; write each one under engine.args instead",
    ),
    Case(
        "engine-arg-help",
        VALID + "engine:\n  args:\n    help: true\n",
        "spec.yaml:8:5: engine.args.help: vllm serve --help prints help and exits; it is not "
        "an engine argument",
    ),
    Case(
        "engine-arg-flags-in-a-value-list",
        VALID
        + "engine:\n  args:\n    uvicorn_log_level: [info, --host, 0.0.0.0, --api-key, open]\n",
        "spec.yaml:8:24: engine.args.uvicorn_log_level: expected text, got a list",
    ),
    Case(
        "engine-arg-not-a-choice",
        VALID + "engine:\n  args:\n    uvicorn_log_level: loud\n",
        "spec.yaml:8:24: engine.args.uvicorn_log_level: expected one of critical, debug, "
        "error, info, trace, warning; got 'loud'",
    ),
    Case(
        "engine-arg-int-choice",
        VALID + "engine:\n  args:\n    max_lora_rank: 7\n",
        "spec.yaml:8:20: engine.args.max_lora_rank: expected one of 1, 8, 16, 32, 64, 128, "
        "256, 320, 512; got 7",
    ),
    Case(
        "engine-arg-human-int",
        VALID + "engine:\n  args:\n    max_num_batched_tokens: many\n",
        "spec.yaml:8:29: engine.args.max_num_batched_tokens: expected a whole number like "
        "8192 or \"32k\", got 'many'",
    ),
    Case(
        "engine-arg-bool-as-text",
        VALID + 'engine:\n  args:\n    enable_prefix_caching: "yes"\n',
        "spec.yaml:8:28: engine.args.enable_prefix_caching: expected true or false "
        "(--enable-prefix-caching is a switch), got 'yes'",
    ),
    Case(
        "engine-arg-switch-as-number",
        VALID + "engine:\n  args:\n    disable_log_stats: 1\n",
        "spec.yaml:8:24: engine.args.disable_log_stats: expected true or false "
        "(--disable-log-stats is a switch), got 1",
    ),
    Case(
        "engine-arg-float-for-int",
        VALID + "engine:\n  args:\n    seed: 1.5\n",
        "spec.yaml:8:11: engine.args.seed: expected a whole number, got 1.5",
    ),
    Case(
        "engine-arg-text-for-float",
        VALID + "engine:\n  args:\n    watermark: high\n",
        "spec.yaml:8:16: engine.args.watermark: expected a number, got 'high'",
    ),
    Case(
        "engine-arg-flag-as-value",
        VALID + "engine:\n  args:\n    tokenizer: --host\n",
        "spec.yaml:8:16: engine.args.tokenizer: starts with '-', which vllm serve could read "
        "as a flag of its own: tokenizer takes one value, never further arguments",
    ),
    Case(
        "engine-arg-flag-with-value",
        VALID + "engine:\n  args:\n    tokenizer: --api-key=open\n",
        "spec.yaml:8:16: engine.args.tokenizer: starts with '-', which vllm serve could read "
        "as a flag of its own: tokenizer takes one value, never further arguments",
    ),
    Case(
        "engine-arg-flag-in-list",
        VALID + 'engine:\n  args:\n    ignore_patterns: ["*.bin", --api-key, k]\n',
        "spec.yaml:8:32: engine.args.ignore_patterns[1]: starts with '-', which vllm serve "
        "could read as a flag of its own: each item of ignore_patterns is one value, never "
        "further arguments",
    ),
    Case(
        "engine-arg-negative-list-item",
        VALID + "engine:\n  args:\n    cudagraph_capture_sizes: [1, -2]\n",
        "spec.yaml:8:34: engine.args.cudagraph_capture_sizes[1]: starts with '-', which vllm "
        "serve could read as a flag of its own: each item of cudagraph_capture_sizes is one "
        "value, never further arguments",
    ),
    Case(
        "engine-arg-scalar-for-list",
        VALID + 'engine:\n  args:\n    ignore_patterns: "*.bin"\n',
        "spec.yaml:8:22: engine.args.ignore_patterns: expected a list of text, like [a, b]",
    ),
    Case(
        "engine-arg-empty-list",
        VALID + "engine:\n  args:\n    ignore_patterns: []\n",
        "spec.yaml:8:22: engine.args.ignore_patterns: expected at least one item (or leave "
        "the argument out)",
    ),
    Case(
        "engine-arg-text-for-json",
        VALID + 'engine:\n  args:\n    compilation_config: "-O3"\n',
        "spec.yaml:8:25: engine.args.compilation_config: expected a mapping or a list (vLLM "
        "reads it as JSON), got '-O3'",
    ),
    Case(
        "engine-arg-nul",
        VALID + 'engine:\n  args:\n    tokenizer: "org/a\\0b"\n',
        "spec.yaml:8:16: engine.args.tokenizer: holds a NUL character; remove it: a process "
        "argument cannot carry it",
    ),
    Case(
        "engine-arg-hf-token",
        VALID + "engine:\n  args:\n    hf_token: abc\n",
        "spec.yaml:8:5: engine.args.hf_token: modaliac sets this from secrets (a Modal secret "
        "holding HF_TOKEN); a token is never a spec value; set it there instead",
    ),
    Case(
        "engine-arg-other-pin-flag-in-list",
        VALID + "engine:\n  version: 0.34.0\n  args:\n    brand_new_flag: [a, -b]\n",
        "spec.yaml:9:25: engine.args.brand_new_flag[1]: starts with '-', which vllm serve "
        "could read as a flag of its own: each item of brand_new_flag is one value, never "
        "further arguments",
    ),
    Case(
        "serve-only-arg-class-only",
        VALID + "engine:\n  args:\n    tool_call_parser: hermes\n",
        "spec.yaml:8:23: engine.args.tool_call_parser: tool_call_parser is a `vllm serve` "
        "option, not an EngineArgs field: the Python class (surfaces.class), this spec's only "
        "vLLM surface, cannot use it; serve over surfaces.http with surfaces.class off, or "
        "drop it",
    ),
    Case(
        "serve-only-arg-class-and-http",
        VALID + "engine:\n  args:\n    enable_auto_tool_choice: true\n" + CLASS_AND_OPEN_HTTP,
        "spec.yaml:8:30: engine.args.enable_auto_tool_choice: enable_auto_tool_choice is a "
        "`vllm serve` option, not an EngineArgs field: the Python class (surfaces.class) "
        "cannot use it and would answer differently from the HTTP server; turn surfaces.class "
        "off or drop it",
    ),
    Case(
        "serve-only-arg-chat-template",
        VALID + 'engine:\n  args:\n    chat_template: "{{ messages }}"\n' + CLASS_AND_OPEN_HTTP,
        "spec.yaml:8:20: engine.args.chat_template: chat_template is a `vllm serve` option, "
        "not an EngineArgs field: the Python class (surfaces.class) cannot use it and would "
        "answer differently from the HTTP server; turn surfaces.class off or drop it",
    ),
    *(
        Case(
            f"serve-arg-breaks-the-proxy-{name}",
            VALID + f"engine:\n  args:\n    {name}: {value}\n" + OPEN_HTTP,
            f"spec.yaml:8:{7 + len(name)}: engine.args.{name}: {name} stops vllm serve answering "
            "plain HTTP on the port modaliac's proxy forwards to (surfaces.http.port); drop it",
        )
        for name, value in [("uds", "/tmp/vllm.sock"), ("grpc", "true"), ("ssl_keyfile", "k.pem")]
    ),
    Case(
        "http-server-arg-without-http",
        VALID + "engine:\n  args:\n    uvicorn_log_level: debug\n",
        "spec.yaml:8:24: engine.args.uvicorn_log_level: uvicorn_log_level configures vllm "
        "serve's HTTP server and this spec has no surfaces.http: drop it or turn "
        "surfaces.http on",
    ),
    # -- public endpoints: an API key secret or open: true, one of the two ----------------
    Case(
        "http-without-key-or-open",
        VALID + "surfaces:\n  http:\n    port: 8001\n",
        f"spec.yaml:7:3: surfaces.http: {HTTP_NO_KEY}",
    ),
    Case(
        "http-true-is-neither",
        VALID + "surfaces:\n  http: true\n",
        f"spec.yaml:7:9: surfaces.http: {HTTP_NO_KEY}",
    ),
    Case(
        "http-with-key-and-open",
        VALID + "surfaces:\n  http:\n    api_key_secret: demo-key\n    open: true\n",
        f"spec.yaml:9:11: surfaces.http.open: {BOTH}",
    ),
    # -- Modal's proxy auth, the @app.server primitive, the deploy strategy ------------------
    Case(
        "http-open-and-proxy-auth",
        VALID + "surfaces:\n  http:\n    proxy_auth: true\n    open: true\n",
        f"spec.yaml:9:11: surfaces.http.open: {OPEN_AND_PROXY}",
    ),
    Case(
        "http-open-and-proxy-auth-and-key",
        VALID + "surfaces:\n  http: {api_key_secret: k, proxy_auth: true, open: true}\n",
        f"spec.yaml:7:53: surfaces.http.open: {OPEN_AND_PROXY}",
    ),
    Case(
        "http-proxy-auth-yes",
        VALID + "surfaces:\n  http:\n    proxy_auth: yes\n",
        'spec.yaml:8:17: surfaces.http.proxy_auth: expected true or false, got "yes"; write '
        "true or false",
    ),
    Case(
        "http-proxy-auth-false-alone",
        VALID + "surfaces:\n  http:\n    proxy_auth: false\n",
        f"spec.yaml:7:3: surfaces.http: {HTTP_NO_KEY}",
    ),
    Case(
        "http-primitive-unknown",
        VALID + "surfaces:\n  http:\n    proxy_auth: true\n    primitive: function\n",
        'spec.yaml:9:16: surfaces.http.primitive: expected one of "cls", "server", got "function"',
    ),
    Case(
        "http-primitive-server-on-the-guards-port",
        VALID + "surfaces:\n  http:\n    proxy_auth: true\n    primitive: server\n    port: 8080\n",
        "spec.yaml:10:11: surfaces.http.port: with primitive server the public guard listens on "
        "8080; choose another port for vLLM",
    ),
    Case(
        "http-primitive-server-transformers",
        VALID + "engine: transformers\nsurfaces:\n  http: {proxy_auth: true, primitive: server}\n",
        "spec.yaml:8:39: surfaces.http.primitive: primitive server is rendered for engine vllm "
        "only; use primitive: cls",
    ),
    Case(
        "http-primitive-server-with-a-timeout-nothing-takes",
        VALID + "scaling: {timeout: 5m}\nsurfaces:\n  class: false\n  http: {proxy_auth: true, "
        "primitive: server}\n",
        "spec.yaml:6:20: scaling.timeout: Modal's @app.server (primitive server) has no request "
        "timeout, and this spec has no Python class it would apply to; remove it",
    ),
    Case(
        "deploy-strategy-unknown",
        VALID + "deploy:\n  strategy: blue-green\n",
        'spec.yaml:7:13: deploy.strategy: expected one of "rolling", "recreate", got "blue-green"',
    ),
    Case(
        "deploy-strategy-misspelt",
        VALID + "deploy:\n  stratgy: recreate\n",
        'spec.yaml:7:3: deploy.stratgy: unknown key "stratgy"; did you mean "strategy"?',
    ),
    Case(
        "deploy-strategy-shorthand",
        VALID + "deploy: recreate\n",
        'spec.yaml:6:9: deploy: expected a mapping, got "recreate"',
    ),
    Case(
        "verify-timeout-without-unit",
        VALID + OPEN_HTTP + "verify:\n  timeout: 30\n",
        'spec.yaml:10:12: verify.timeout: 30 has no unit: write "30s" for seconds or '
        '"30m" for minutes',
    ),
    Case(
        "verify-gateway-timeout-without-unit",
        GATEWAY + ROUTER + "verify: {enabled: true, timeout: 90}\n",
        'spec.yaml:11:34: verify.timeout: 90 has no unit: write "90s" (1m30s) for seconds or '
        '"90m" (1h30m) for minutes',
    ),
    Case(
        "verify-gateway-key-misspelt",
        GATEWAY + ROUTER + "verify:\n  timout: 5m\n",
        'spec.yaml:12:3: verify.timout: unknown key "timout"; did you mean "timeout"?',
    ),
    Case(
        "verify-timeout-too-long",
        VALID + OPEN_HTTP + "verify:\n  enabled: true\n  timeout: 2h\n",
        "spec.yaml:11:12: verify.timeout: verification waits from 1s to 1h, got 2h",
    ),
    Case(
        "verify-timeout-zero",
        VALID + OPEN_HTTP + "verify: {enabled: true, timeout: 0s}\n",
        "spec.yaml:9:34: verify.timeout: verification waits from 1s to 1h, got 0s",
    ),
    Case(
        "verify-key-misspelt",
        VALID + OPEN_HTTP + "verify:\n  enabeld: true\n",
        'spec.yaml:10:3: verify.enabeld: unknown key "enabeld"; did you mean "enabled"?',
    ),
    Case(
        "verify-enabled-not-a-boolean",
        VALID + OPEN_HTTP + "verify:\n  enabled: maybe\n",
        'spec.yaml:10:12: verify.enabled: expected true or false, got "maybe"; write true or false',
    ),
    Case(
        "verify-shorthand-not-a-boolean",
        VALID + OPEN_HTTP + "verify: always\n",
        "spec.yaml:9:9: verify: expected true, false or a mapping (enabled, timeout, "
        "request), got 'always'",
    ),
    Case(
        "verify-without-an-http-endpoint",
        VALID + "verify: true\n",
        "spec.yaml:6:9: verify: verification sends a request to the HTTP endpoint, and "
        "this spec has none; list surfaces.http or turn verify off",
    ),
    Case(
        "verify-prompt-on-two-lines",
        VALID + OPEN_HTTP + 'verify:\n  request:\n    prompt: "one\\ntwo"\n',
        "spec.yaml:11:13: verify.request.prompt: holds a line break (U+000A) at "
        "character 4; remove it: this setting is one line of printable text",
    ),
    Case(
        "verify-request-unknown-key",
        VALID + OPEN_HTTP + "verify:\n  request:\n    body: {}\n",
        'spec.yaml:11:5: verify.request.body: unknown key "body"',
    ),
    Case(
        "http-max-body-too-large",
        VALID + "surfaces:\n  http:\n    api_key_secret: demo-key\n    max_body: 2GiB\n",
        "spec.yaml:9:15: surfaces.http.max_body: expected a request body limit from 1MiB to "
        "1GiB, got 2GiB",
    ),
    Case(
        "http-max-body-zero",
        VALID + "surfaces:\n  http:\n    open: true\n    max_body: 0MiB\n",
        "spec.yaml:9:15: surfaces.http.max_body: expected a request body limit from 1MiB to "
        "1GiB, got 0",
    ),
    Case(
        "http-max-body-in-decimal-units",
        VALID + "surfaces:\n  http:\n    open: true\n    max_body: 32MB\n",
        'spec.yaml:9:15: surfaces.http.max_body: expected a memory size like "64GiB" or '
        '"512MiB" (or MiB as a number); did you mean "32MiB"?',
    ),
    Case(
        "gateway-without-router",
        GATEWAY,
        'spec.yaml:1:1: missing key "router": name the Modal secret that holds the API key in '
        "router.api_key_secret, or set router.open: true to serve without one",
    ),
    Case(
        "gateway-router-without-key-or-open",
        GATEWAY + "router:\n  api_key_env: KEY\n",
        f"spec.yaml:9:1: router: {NO_KEY}",
    ),
    Case(
        "gateway-router-with-key-and-open",
        GATEWAY + ROUTER + "  open: true\n",
        f"spec.yaml:11:9: router.open: {BOTH}",
    ),
    Case(
        "gateway-router-max-body-too-large",
        GATEWAY + ROUTER + "  max_body: 4096\n",
        "spec.yaml:11:13: router.max_body: expected a request body limit from 1MiB to 1GiB, "
        "got 4GiB",
    ),
    Case(
        "matryoshka-wider-than-dimension",
        edit(
            "  task: embed",
            "  task: embed\n  embedding:\n    dimension: 384\n    matryoshka: [768, 256]",
        ),
        "spec.yaml:7:17: model.embedding.matryoshka: width 768 exceeds the dimension (384)",
    ),
    # -- durations need a unit: a bare number reads as seconds or minutes -----------------
    Case(
        "duration-without-unit-seed-003",  # seed 003 meant minutes
        VALID + "scaling:\n  scaledown_window: 5\n",
        'spec.yaml:7:21: scaling.scaledown_window: 5 has no unit: write "5s" for seconds or '
        '"5m" for minutes',
    ),
    Case(
        "duration-without-unit-both-readings",
        VALID + "scaling:\n  timeout: 300\n",
        'spec.yaml:7:12: scaling.timeout: 300 has no unit: write "300s" (5m) for seconds or '
        '"300m" (5h) for minutes',
    ),
    Case(
        "duration-without-unit-downloader",
        VALID + "surfaces:\n  downloader:\n    timeout: 90\n",
        'spec.yaml:8:14: surfaces.downloader.timeout: 90 has no unit: write "90s" (1m30s) for '
        'seconds or "90m" (1h30m) for minutes',
    ),
    Case(
        "duration-without-unit-fraction",
        VALID + "scaling:\n  startup_timeout: 1.5\n",
        'spec.yaml:7:20: scaling.startup_timeout: 1.5 has no unit; expected a duration like "5m", '
        '"90s" or "1h"',
    ),
    Case(
        "duration-without-unit-too-many-minutes",
        VALID + "scaling:\n  timeout: 1000000\n",
        'spec.yaml:7:12: scaling.timeout: 1000000 has no unit: write "1000000s" (277h46m40s) for '
        "seconds",
    ),
    Case(
        "duration-without-unit-in-an-environment",
        VALID + "environments:\n  prod:\n    scaling:\n      scaledown_window: 2\n",
        'spec.yaml:9:25: environments.prod.scaling.scaledown_window: 2 has no unit: write "2s" '
        'for seconds or "2m" for minutes',
    ),
    Case(
        "duration-without-unit-gateway-router",
        GATEWAY + ROUTER + "  upstream_timeout: 600\n",
        'spec.yaml:11:21: router.upstream_timeout: 600 has no unit: write "600s" (10m) for '
        'seconds or "600m" (10h) for minutes',
    ),
    # -- surfaces: only those listed render -------------------------------------------------
    Case(
        "surfaces-listing-none",
        VALID + "surfaces: {}\n",
        "spec.yaml:6:1: surfaces: lists no entry point, so the app would serve nothing; list "
        "class, http or downloader (a spec without surfaces gets the class)",
    ),
    Case(
        "surfaces-all-switched-off",
        VALID + "surfaces:\n  class: false\n",
        "spec.yaml:6:1: surfaces: lists no entry point, so the app would serve nothing; list "
        "class, http or downloader (a spec without surfaces gets the class)",
    ),
    # -- the Hugging Face token's secret ----------------------------------------------------
    Case(
        "hf-token-secret-also-under-secrets",
        VALID + "secrets: [huggingface]\nhf_token_secret: huggingface\n",
        "spec.yaml:7:18: hf_token_secret: 'huggingface' is also under secrets; hf_token_secret "
        "attaches it already, so remove it from secrets",
    ),
    Case(
        "hf-token-secret-is-the-api-key-secret",
        VALID + "hf_token_secret: keys\nsurfaces:\n  http:\n    api_key_secret: keys\n",
        "spec.yaml:6:18: hf_token_secret: 'keys' is also surfaces.http.api_key_secret, which the "
        "public endpoint reads; keep the Hugging Face token in a secret of its own",
    ),
    Case(
        "hf-token-secret-is-the-router-key-secret",
        GATEWAY + ROUTER + "hf_token_secret: gw-key\n",
        "spec.yaml:11:18: hf_token_secret: 'gw-key' is also router.api_key_secret, which the "
        "public endpoint reads; keep the Hugging Face token in a secret of its own",
    ),
    Case(
        "hf-token-secret-name",
        VALID + "hf_token_secret: hugging face\n",
        f"spec.yaml:6:18: hf_token_secret: {MODAL_NAMES}",
    ),
    # -- gateway model ids match case-insensitively -----------------------------------------
    Case(
        "gateway-ids-differ-only-in-case",  # seed 004's LiteLLM table lower-cased an id
        GATEWAY.replace("org/beta", "ORG/Alpha") + ROUTER,
        "spec.yaml:7:5: models[1]: id 'ORG/Alpha' and the id 'org/alpha' of 'alpha' differ only "
        "in case; the router matches model ids case-insensitively, so rename one",
    ),
    Case(
        "gateway-name-is-another-models-id",
        GATEWAY.replace("org/alpha", "Beta") + ROUTER,
        "spec.yaml:7:5: models[1]: name 'beta' and the id 'Beta' of 'alpha' differ only in case; "
        "the router matches model ids case-insensitively, so rename one",
    ),
    # -- several problems at once: one line each, in file order ----------------------------
    Case(
        "several-errors-sorted-by-position",
        "gpu: X100\nmodel:\n  id: BAAI/bge-small-en-v1.5\n  task: embedd\napp: my demo!\n",
        (
            f"spec.yaml:1:6: gpu: unknown GPU type 'X100'; did you mean 'H100'? "
            f"Modal offers {GPU_TYPES}",
            'spec.yaml:4:9: model.task: expected one of "embed", "generate", got "embedd"; '
            'did you mean "embed"?',
            f"spec.yaml:5:6: app: {MODAL_NAMES}",
        ),
    ),
    # -- api_key_env names a variable of its own -------------------------------------------
    Case(
        "api-key-env-is-a-loader-variable",
        VALID + "surfaces:\n  http:\n    api_key_secret: k\n    api_key_env: PYTHONPATH\n",
        f"spec.yaml:9:18: surfaces.http.api_key_env: 'PYTHONPATH' {OWN_SOFTWARE}",
    ),
    Case(
        "api-key-env-is-the-hf-token",
        GATEWAY + ROUTER + "  api_key_env: HF_TOKEN\n",
        f"spec.yaml:11:16: router.api_key_env: 'HF_TOKEN' {OWN_SOFTWARE}",
    ),
    Case(
        "api-key-env-pinned-by-image-env",
        VALID
        + "surfaces:\n  http:\n    api_key_secret: k\n    api_key_env: MY_KEY\n"
        + "image:\n  env:\n    MY_KEY: x\n",
        "spec.yaml:12:13: image.env.MY_KEY: sets 'MY_KEY', the api_key_env at "
        "surfaces.http.api_key_env: the image would pin the API key; remove it from image.env",
    ),
]
SECRETS = (HF_TOKEN, API_KEY, "abc123", *(token for _, token, _ in TOKENS))


class Accepted(NamedTuple):
    id: str
    text: str


# Specs close to the refusals above that must load: the refusals are no wider than they say.
ACCEPTED = [
    Accepted(
        "api-key-env-is-vllms-own-key",
        VALID + "surfaces:\n  http:\n    api_key_secret: k\n    api_key_env: VLLM_API_KEY\n",
    ),
    Accepted(
        "sixty-four-levels",
        VALID + "engine:\n  args:\n    compilation_config: " + nested(61) + "\n",
    ),
    Accepted(
        "multi-line-chat-template",  # engine.args reach vLLM as values, line breaks and all
        VALID
        + 'engine:\n  args:\n    chat_template: "{{ messages }}\\n{{ tools }}"\n'
        + "surfaces:\n  class: false\n  http:\n    open: true\n",
    ),
    *(
        Accepted(f"image-base-{name}", VALID + f'image:\n  base: "{base}"\n')
        for name, base in [
            ("bare-name", "ubuntu"),
            ("registry-port-and-path", "localhost:5000/team/serving_image.v2:2024-01"),
            ("registry-with-dots", "registry.example.com:443/a/b__c--d:Tag_1.0"),
            ("digest", "ghcr.io/org/img@sha256:" + "0123456789abcdef" * 4),
            ("tag-and-digest", "python:3.12-slim@sha256:" + "a" * 64),
            ("ipv6-registry", "[::1]:5000/x"),
            ("upper-case-registry", "MyRegistry.example.com/x"),
        ]
    ),
    Accepted(
        "image-env-with-spaces-quotes-and-unicode",
        VALID + "image:\n  env:\n    NOTE: 'caf\u00e9 \"=\" $HOME; echo'\n",
    ),
    Accepted(
        "revision-a-pull-request-ref", edit("  task: embed", "  task: embed\n  revision: refs/pr/1")
    ),
    Accepted(
        "token-count-with-a-fraction",
        edit("  task: embed", '  task: embed\n  max_model_len: "1.5k"'),
    ),
    Accepted("downloader-timeout-of-a-day", VALID + "surfaces:\n  downloader:\n    timeout: 24h\n"),
    Accepted("memory-of-1024-tib", VALID + "resources:\n  memory: 1024TiB\n"),
    Accepted("ephemeral-disk-of-3-tib", VALID + "resources:\n  ephemeral_disk: 3TiB\n"),
    *(
        Accepted(f"region-{code}", VALID + f"placement:\n  region: {code}\n  cloud: oci\n")
        for code in ("us", "ap-melbourne", "jp", "us-east-1", "us-east4", "us-ashburn-1")
    ),
    Accepted("retries-zero", VALID + "retries: 0\n"),
    Accepted(
        "retries-at-modal-bounds",
        VALID + "retries:\n  max_retries: 10\n  backoff_coefficient: 10\n  initial_delay: 0s\n"
        "  max_delay: 1m\n",
    ),
    Accepted(
        "custom-domain-deep-with-digits-and-hyphens",
        VALID + "surfaces:\n  http:\n    open: true\n    custom_domains: [a-1.b2.example.co.uk]\n",
    ),
    Accepted("gpu-count-with-a-leading-zero", edit("gpu: L4", "gpu: 'L4:02'")),
    *(Accepted(f"secret-name-{name}", VALID + f"secrets: [{name}]\n") for name in SECRET_NAMES),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text.encode() if isinstance(text, str) else text)


@pytest.mark.parametrize("case", ACCEPTED, ids=[case.id for case in ACCEPTED])
def test_near_misses_load(
    case: Accepted, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    write(workdir / "spec.yaml", case.text)
    code, out, err = run(capsys, "validate", "spec.yaml")
    assert (code, out) == (0, "spec.yaml: ok (demo)\n"), err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malformed_spec_gives_exactly_its_lines(
    case: Case, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    write(workdir / "spec.yaml", case.text)
    expected = [case.expected] if isinstance(case.expected, str) else list(case.expected)
    for argv in (["validate", "spec.yaml"], ["render", "spec.yaml", "-o", "out"]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, ""), argv
        assert err.splitlines() == expected, argv
        assert err.endswith("\n") and "Traceback" not in err
        assert not any(secret in err for secret in SECRETS)
    assert not (workdir / "out").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate", "missing.yaml"], "missing.yaml: no such file"),
        (["validate", "empty-dir"], "empty-dir: holds no *.yaml spec files"),
    ],
    ids=["missing-file", "directory-without-specs"],
)
def test_unreadable_targets(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "empty-dir").mkdir()
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (1, "", expected + "\n")


HOSTILE = [case for case in CASES if case.id.startswith("deep-") or case.id == "yaml-alias-bomb"]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.id for case in HOSTILE])
def test_fmt_refuses_what_the_loader_refuses(
    case: Case, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    """fmt constructs the data to check its own output: it never expands an alias bomb."""
    write(workdir / "spec.yaml", case.text)
    code, out, err = run(capsys, "fmt", "spec.yaml")
    assert (code, out, err) == (1, "", case.expected + "\n")
    assert (workdir / "spec.yaml").read_text() == case.text


@pytest.mark.parametrize("path", ["fast", "positioned"])
def test_sixty_four_levels_load_on_either_path(
    path: str, capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 1 inside 61 lists under engine.args.compilation_config is at level 64: the limit,
    not past it."""
    pinned = edit("  task: embed", f"  revision: {'0a' * 20}\n  task: embed")
    anchor = "&x " if path == "positioned" else ""
    write(
        workdir / "spec.yaml",
        pinned + f"engine:\n  args:\n    compilation_config: {anchor}{nested(61)}\n",
    )
    if path == "fast":
        monkeypatch.setattr("modal_iac.loading.load.round_trip", None)  # calling it would fail
    code, out, err = run(capsys, "validate", "spec.yaml")
    assert (code, out, err) == (0, "spec.yaml: ok (demo)\n", "")


TOO_MANY = (
    "holds more than 20000 keys and values; no spec needs that many, so remove what this one "
    "does not use"
)
NO_GPU = VALID.replace("gpu: L4\n", "")
# Hostile shapes under the file-size limit that the one libyaml pass refuses by itself.
REFUSED_FAST = [
    Case(  # 240 KB: the round-trip composer took 5 s to reach the same line
        "a-huge-flow-list",
        NO_GPU + "gpu: [" + ", ".join(["L4"] * 60_000) + "]\n",
        f"spec.yaml:5:6: gpu: {TOO_MANY}",
    ),
    Case(
        "a-huge-flow-mapping",
        VALID + "labels: {" + ", ".join(f"l{i}: x" for i in range(12_000)) + "}\n",
        f"spec.yaml:6:9: labels: {TOO_MANY}",
    ),
    Case(
        "a-long-block-mapping",
        VALID + "labels:\n" + "".join(f"  l{i}: x\n" for i in range(10_001)),
        f"spec.yaml:7:3: labels: {TOO_MANY}",
    ),
    Case(  # the list that holds too many is named, not the one open when the count passed
        "a-huge-list-inside-a-list",
        VALID + "engine:\n  args:\n    x: [" + "1, " * 100 + "[" + "1, " * 20_000 + "1]]\n",
        f"spec.yaml:8:309: engine.args.x[100]: {TOO_MANY}",
    ),
    Case(
        "odd-values-past-the-limit",
        NO_GPU + "gpu: [" + ", ".join(["1", ".inf", "2001-01-01"] * 7_000) + "]\n",
        f"spec.yaml:5:6: gpu: {TOO_MANY}",
    ),
    Case(
        "a-huge-top-level-list",
        "[" + ", ".join(["1"] * 70_000) + "]\n",
        f"spec.yaml:1:1: {TOO_MANY}",
    ),
    Case(
        "flow-lists-100000-deep",
        NO_GPU + "gpu: " + nested(100_000) + "\n",
        f"spec.yaml:5:70: gpu: {TOO_DEEP}",
    ),
    Case(
        "deep-after-the-limit",  # the composer meets the depth first: so does the fast path
        VALID + "labels: {" + ", ".join(f"l{i}: x" for i in range(12_000)) + "}\n"
        "engine:\n  args:\n    x: " + nested(100) + "\n",
        f"spec.yaml:9:70: engine.args.x: {TOO_DEEP}",
    ),
]


@pytest.mark.parametrize("case", REFUSED_FAST, ids=[case.id for case in REFUSED_FAST])
def test_hostile_shapes_are_refused_without_the_round_trip_parse(
    case: Case, capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line from the libyaml pass alone: the round-trip parser, which reads such a file
    in seconds of pure Python, is never called."""
    write(workdir / "spec.yaml", case.text)
    monkeypatch.setattr("modal_iac.loading.load.round_trip", None)  # calling it would fail
    code, out, err = run(capsys, "validate", "spec.yaml")
    assert (code, out, err) == (1, "", f"{case.expected}\n")


BOTH_PATHS = [REFUSED_FAST[0], REFUSED_FAST[3]]


@pytest.mark.parametrize("case", BOTH_PATHS, ids=[case.id for case in BOTH_PATHS])
def test_a_huge_spec_gets_the_same_line_on_either_path(
    case: Case, capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "spec.yaml", case.text)
    monkeypatch.setattr("modal_iac.loading.load.fast_parse", lambda text, shown: None)
    code, out, err = run(capsys, "validate", "spec.yaml")
    assert (code, out, err) == (1, "", f"{case.expected}\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            (VALID + "---\n") * 3_000,
            "spec.yaml:6:1: a second YAML document starts here; put one spec in each file",
        ),
        (
            VALID + "x: " + "y" * (1 << 20) + "\n",
            f"spec.yaml: the file is {len(VALID) + 4 + (1 << 20)} bytes; "
            "a spec file is at most 256 KiB",
        ),
        (  # past the limit, broken YAML is what the round-trip path reports, as ever
            NO_GPU + "gpu: [" + ", ".join(["L4"] * 25_000) + "]\nz: [\n",
            "spec.yaml:7:1: not valid YAML: expected the node content, but found the end of the "
            "file (while parsing a flow node at line 7, column 1)",
        ),
    ],
    ids=["many-small-documents", "a-1-MB-scalar", "broken-after-the-limit"],
)
def test_other_hostile_files_are_one_line(
    text: str, expected: str, capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    write(workdir / "spec.yaml", text)
    code, out, err = run(capsys, "validate", "spec.yaml")
    assert (code, out, err) == (1, "", f"{expected}\n")


def test_a_directory_is_not_a_spec_file(workdir: Path) -> None:
    (workdir / "spec.yaml").mkdir()
    with pytest.raises(SpecError, match=r"^spec\.yaml: is a directory, not a spec file$"):
        load_spec("spec.yaml")


def test_odd_files_in_a_folder_are_named_not_skipped(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipe and a dangling link among a folder's specs are each one line; a good spec next
    to them is still checked (its own errors would be listed too)."""
    folder = workdir / "many"
    folder.mkdir()
    os.mkfifo(folder / "pipe.yaml")
    (folder / "gone.yaml").symlink_to(folder / "nowhere.yaml")
    (folder / "sub.yaml").mkdir()  # a folder named like a spec is only a folder
    (folder / "sub.yaml" / "bad.yaml").write_text("app: [\n")
    code, out, err = run(capsys, "validate", "many")
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert "many/gone.yaml: no such file" in lines
    assert "many/pipe.yaml: is not a regular file (a pipe or a device), so not a spec file" in lines
    assert "many/sub.yaml: is a directory, not a spec file" in lines
    assert any(line.startswith("many/sub.yaml/bad.yaml:") for line in lines)
    assert len(lines) == 4


def test_a_pipe_is_refused_unread(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reading a named pipe would wait for a writer for ever: it is never opened."""
    os.mkfifo(workdir / "spec.yaml")
    code, out, err = run(capsys, "validate", "spec.yaml")
    assert (code, out) == (1, "")
    assert err == "spec.yaml: is not a regular file (a pipe or a device), so not a spec file\n"


@pytest.mark.parametrize("what", ["state", "modal config"])
def test_a_pipe_as_state_or_modal_config_never_hangs(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    pipe = workdir / "pipe"
    os.mkfifo(pipe)
    argv = ["plan", "--offline", "specs"]
    if what == "state":
        argv += ["--state", str(pipe)]
    else:
        monkeypatch.setenv("MODAL_CONFIG_PATH", str(pipe))  # refused, never opened
    (workdir / "specs").mkdir(exist_ok=True)
    (workdir / "specs" / "a.yaml").write_text(
        "app: a\nmodel: {id: o/m, revision: main, task: embed}\ngpu: L4\n"
        "policy: {suppress: {MDL001: test}}\n"
    )
    code, out, err = run(capsys, *argv)
    kind = "state" if what == "state" else "Modal config"
    assert (code, out) == (1, "")
    assert err == f"{pipe}: is not a regular file (a pipe or a device), so not a {kind}\n"


def test_python_tags_never_run(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    """A tag that would create a file if any loader constructed it; no loader does."""
    marker = workdir / "pwned"
    payloads = [
        f'app: !!python/object/apply:os.system ["touch {marker}"]',
        "app: !!python/object/apply:pathlib.Path.touch "
        f'[!!python/object/apply:pathlib.Path ["{marker}"]]',
        f'app: !!python/object/new:subprocess.check_call [["touch", "{marker}"]]',
    ]
    for payload in payloads:
        write(workdir / "spec.yaml", edit("app: demo", payload))
        for argv in (["validate", "spec.yaml"], ["render", "spec.yaml"], ["plan", "spec.yaml"]):
            code, out, err = run(capsys, *argv)
            assert (code, out) == (1, ""), argv
            assert "is not allowed in specs" in err, argv
    assert not marker.exists()


def test_errors_from_every_file_are_reported(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    write(workdir / "a.yaml", edit("task: embed", "task: embedd"))
    write(workdir / "b.yaml", edit("gpu: L4", "gpus: L4"))
    write(workdir / "ok.yaml", VALID.replace("demo", "fine"))
    code, out, err = run(capsys, "validate", "b.yaml", "ok.yaml", "a.yaml")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        'a.yaml:4:9: model.task: expected one of "embed", "generate", got "embedd"; '
        'did you mean "embed"?',
        'b.yaml:5:1: gpus: unknown key "gpus"; did you mean "gpu"?',
    ]


HOSTILE_FILES = [
    "deep-flow-mappings",  # a RecursionError, once
    "deep-block-mappings",
    "yaml-alias-bomb",
    "token-count-of-400-nines",
    "gpu-count-of-5000-digits",
    "yaml-tag-refused",
    "unknown-top-level-key",
]


def in_folder(case: Case) -> list[str]:
    """The lines of ``case`` when its text is the file specs/<id>.yaml."""
    expected = [case.expected] if isinstance(case.expected, str) else list(case.expected)
    return [line.replace("spec.yaml:", f"specs/{case.id}.yaml:", 1) for line in expected]


def hostile_folder(workdir: Path) -> list[Case]:
    cases = [case for case in CASES if case.id in HOSTILE_FILES]
    (workdir / "specs").mkdir()
    for case in cases:
        write(workdir / "specs" / f"{case.id}.yaml", case.text)
    write(workdir / "specs" / "fine.yaml", VALID.replace("demo", "fine"))
    return cases


def test_one_hostile_file_hides_no_other_files_errors(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    cases = hostile_folder(workdir)
    expected = [line for case in sorted(cases, key=lambda c: c.id) for line in in_folder(case)]
    for argv in (["validate", "specs"], ["render", "specs", "-o", "out"], ["plan", "specs"]):
        code, out, err = run(capsys, *argv)
        assert (code, out, err.splitlines()) == (1, "", expected), argv
    assert not (workdir / "out").exists()


def test_fmt_reports_every_file_it_cannot_read_and_writes_none(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    """fmt does not validate, so only the files that are not specs at the YAML level fail."""
    cases = hostile_folder(workdir)
    before = {path: path.read_bytes() for path in (workdir / "specs").iterdir()}
    refused = ("deep-", "yaml-")
    expected = [
        line
        for case in sorted(cases, key=lambda c: c.id)
        if case.id.startswith(refused)
        for line in in_folder(case)
    ]
    code, out, err = run(capsys, "fmt", "specs")
    assert (code, out, err.splitlines()) == (1, "", expected)
    assert {path: path.read_bytes() for path in (workdir / "specs").iterdir()} == before


def test_a_bug_on_one_file_is_that_files_line_and_the_others_still_report(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modal_iac.loading import load

    checks = load.check_policies

    def buggy(spec: object) -> object:
        if getattr(spec, "app", None) == "buggy":
            raise RuntimeError(f"a message that quotes the file: {HF_TOKEN}")
        return checks(spec)  # type: ignore[arg-type]

    monkeypatch.setattr(load, "check_policies", buggy)
    cases = hostile_folder(workdir)
    write(workdir / "specs" / "buggy.yaml", VALID.replace("demo", "buggy"))
    lines = [line for case in cases for line in in_folder(case)]
    lines.append(
        "specs/buggy.yaml: modaliac failed on this file (RuntimeError), which is a bug; please "
        "report it (--debug shows the traceback)"
    )
    code, out, err = run(capsys, "validate", "specs")
    assert (code, out) == (1, "")
    assert sorted(err.splitlines()) == sorted(lines)
    assert HF_TOKEN not in err
    with pytest.raises(SpecErrors) as raised:
        main(["--debug", "validate", "specs"])
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_one_app_in_two_files_points_at_the_second(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    write(workdir / "a.yaml", VALID)
    write(workdir / "b.yaml", "# the same app again\n" + VALID)
    code, out, err = run(capsys, "validate", "a.yaml", "b.yaml")
    assert (code, out) == (1, "")
    assert err == (
        "b.yaml:2:6: app: app 'demo' is also defined in a.yaml; app names are unique per "
        "environment\n"
    )


def test_the_installed_command_prints_one_line_and_no_traceback(workdir: Path) -> None:
    write(workdir / "spec.yaml", VALID + f"image:\n  env:\n    HF_TOKEN: {HF_TOKEN}\n")
    write(workdir / "bomb.yaml", alias_bomb())
    result = subprocess.run(
        [sys.executable, "-m", "modal_iac.cli", "validate", "spec.yaml", "bomb.yaml"],
        capture_output=True,
        text=True,
        cwd=workdir,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "bomb.yaml:5:4: e: anchors and aliases expand to more than 20000 values; "
        "write the values out",
        f"spec.yaml:8:15: image.env.HF_TOKEN: this looks like a Hugging Face token; {SECRET_HINT}",
    ]


def test_names_shaped_like_words_are_not_mistaken_for_tokens(workdir: Path) -> None:
    write(
        workdir / "spec.yaml",
        VALID
        + "secrets: [sk-embedding-cache-production, hf_token_for_the_team_models]\n"
        + "volumes:\n  /root/.cache/huggingface: sk-learn-model-weights-volume\n",
    )
    assert load_spec("spec.yaml").spec.secrets == [
        "sk-embedding-cache-production",
        "hf_token_for_the_team_models",
    ]


@pytest.mark.parametrize(("name", "token", "what"), TOKENS, ids=[t[0] for t in TOKENS])
def test_policy_lines_never_repeat_a_token(name: str, token: str, what: str) -> None:
    """The loader refuses these first; the policy's own lines hide them too (MDL001 once
    printed a revision the token check missed)."""
    from modal_iac.review.policy import check
    from modal_iac.spec.service import Spec

    spec = Spec.model_validate(
        {"app": "demo", "model": {"id": "o/m", "task": "embed", "revision": token}, "gpu": "L4"}
    )
    texts = [finding.text() for finding in check(spec)[1]]
    assert any(f"(a value that looks like {what}, not shown) is not a commit" in t for t in texts)
    assert not any(token in text for text in texts)


# -- robustness: any edit of a valid spec gives located lines, never a crash ------------------

KALM = (ROOT / "specs" / "kalm.yaml").read_text(encoding="utf-8")


@st.composite
def mangled_specs(draw: st.DrawFn) -> str:
    """specs/kalm.yaml with a few characters deleted, inserted or replaced (hostile pieces
    among them: deep nesting, huge numbers, other scripts' digits, control escapes, a token)."""
    text = KALM
    pieces = ["", ":", "- ", "  ", "\n", "'", '"', "[", "{", "&a ", "*a", "!!int ", "!a ", "x"]
    hostile = ["[" * 70, "{a: " * 40, "9" * 400, "\u00b2", "\uff19", '"\\n"', '"\\0"', HF_TOKEN]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 4))
        insert = draw(st.sampled_from([*pieces, *hostile]))
        text = text[:at] + insert + text[at + cut :]
    return text


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=mangled_specs())
def test_mangled_specs_load_or_fail_with_located_lines(text: str, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except SpecErrors as exc:
        errors = exc.errors
    except SpecError as exc:
        errors = [exc]
    else:
        return
    for error in errors:
        line = str(error)
        assert line.startswith(f"{path}:") and "\n" not in line
        assert error.line is not None and error.column is not None, line
        assert 1 <= error.line <= text.count("\n") + 2, line
        assert "Input should" not in line and "pydantic" not in line, line
        assert HF_TOKEN not in line, line
