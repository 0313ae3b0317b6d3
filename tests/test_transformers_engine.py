"""The transformers engine: the generated server run for real, and the app Modal would get.

A spec with ``engine: transformers`` is rendered and the generated file imported with the
real modal SDK (registered in ``sys.modules``, throw-away HOME, as ``modal deploy`` imports
it). Its module-level code (``load_model``, ``create_app``) then serves tiny random-weight
models the test builds itself in a temporary folder, no hub access: a BERT text encoder with
a word-level tokenizer, a CLIP dual encoder, and a Gemma 3 vision-language model (one tower
for texts and images, like seed 002's), each processor assembled locally. uvicorn serves
them on 127.0.0.1. Vectors are checked against references computed here from the model's
own outputs. Then the Modal side: what the app defines offline, and what the client sends
when it deploys to the local Modal API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import socket
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import modal
import modal.runner
import pytest
from helpers import import_file, isolate_modal_config
from modal_proto import api_pb2
from pydantic import ValidationError
from test_vllm_server import (
    API_KEY_MISSING,
    LIMIT,
    NO_KEY_IDS,
    NO_KEY_VALUES,
    accepted_credentials,
    assert_openai_error,
    assert_refused,
    assert_refused_json,
    bearer,
    each_hostile_json_body,
    refused_credentials,
    running_asgi,
    send_raw,
    set_key,
    unsent_health_bodies,
)

from modal_iac.loading.load import LoadedSpec, load_spec
from modal_iac.local_api import LocalModalServer
from modal_iac.render.app import Rendered, render
from modal_iac.spec.app import HF_CACHE
from modal_iac.spec.service import Spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "multimodal-embedding-transformers.yaml"
API_KEY = "test-key-2f7c9a"
BATCH = 4
CLASS = "TinyEmbedder"
WORDS = [
    *("hello", "world", "the", "a", "cat", "dog", "photo", "of"),
    *("red", "blue", "green", "sky", "sea", "tree", "over", "by"),
]
HIDDEN = 32  # BERT width: the text server's dimension
PROJECTION = 16  # CLIP projection: the image server's dimension
# The vision tower of both tiny image models (CLIP's and Gemma 3's SigLIP): 4x4 patches of 8 px.
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def spec_data(snapshot: str = "none", **change: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "app": f"tiny-transformers-{snapshot}",
        "model": {
            "id": "org/tiny-embed",
            "revision": "0123abc",
            "task": "embed",
            "dtype": "float32",
            "multimodal": True,
            "embedding": {"pooling": "mean", "matryoshka": [16, 8]},
        },
        "engine": {"name": "transformers", "batch_size": BATCH},
        "gpu": "L40S",
        "snapshot": snapshot,
        "volumes": {HF_CACHE: "hf-cache"},
        "secrets": ["huggingface"],
        "scaling": {"scaledown_window": "60s", "concurrency": 3},
        "surfaces": {
            "class": {"name": CLASS},
            "http": {"api_key_secret": "tiny-api-key", "api_key_env": "API_KEY"},
            "downloader": True,
        },
    }
    data.update(change)
    return data


def rendered(data: dict[str, Any]) -> Rendered:
    spec = Spec.model_validate(data)
    assert not spec.problems(), spec.problems()
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return render(LoadedSpec(f"{data['app']}.yaml", digest, spec))


def import_source(source: str, folder: Path, mp: pytest.MonkeyPatch) -> ModuleType:
    """Write and import a generated file as ``modal deploy`` does: registered in sys.modules
    first (else Modal pickles the functions instead of uploading the file)."""
    name = f"modaliac_transformers_{uuid.uuid4().hex[:12]}"
    path = folder / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    return import_file(path, name, mp)


@contextmanager
def isolated_modal(home: Path) -> Iterator[pytest.MonkeyPatch]:
    """No MODAL_* variables, a throw-away HOME, and no parsed ~/.modal.toml."""
    with pytest.MonkeyPatch.context() as mp:
        isolate_modal_config(mp, home)
        yield mp


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated module of a multimodal, authenticated spec (snapshot none)."""
    tmp = tmp_path_factory.mktemp("generated")
    with isolated_modal(tmp / "home") as mp:
        yield import_source(rendered(spec_data()).source, tmp / "apps", mp)


# -- tiny models, built here --------------------------------------------------------------


def word_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({word: index + 4 for index, word in enumerate(WORDS)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=48,
    )


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 4,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    text = {
        "vocab_size": len(WORDS) + 4,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 3,
    }
    config = CLIPConfig(text_config=text, vision_config=TINY_VISION, projection_dim=PROJECTION)
    CLIPModel(config).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=word_tokenizer()).save_pretrained(folder)
    return folder


GEMMA_SPECIALS = [
    *("<pad>", "<unk>", "<bos>", "<eos>"),
    *("<start_of_image>", "<end_of_image>", "<image_soft_token>"),
]


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tower for texts and images, as seed 002's Gemma 3 based model: a SigLIP vision
    encoder whose 4 image tokens enter a 2-layer Gemma 3 decoder."""
    import torch
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        PreTrainedTokenizerFast,
    )

    folder = tmp_path_factory.mktemp("tiny-gemma3")
    vocab = {token: index for index, token in enumerate([*GEMMA_SPECIALS, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens([AddedToken(t, special=True) for t in GEMMA_SPECIALS])
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 128,
        "sliding_window": 16,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 3,
    }
    config = Gemma3Config(
        text_config=text,
        vision_config=TINY_VISION,
        mm_tokens_per_image=4,
        boi_token_index=vocab["<start_of_image>"],
        eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"],
    )
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(config).save_pretrained(folder)
    images = Gemma3ImageProcessor(size={"height": 32, "width": 32})
    Gemma3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_length=4
    ).save_pretrained(folder)
    return folder


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- serving with uvicorn ------------------------------------------------------------------


@contextmanager
def serving(asgi_app: Any) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port, in a thread, stopped on exit; yields its URL."""
    import uvicorn

    class Server(uvicorn.Server):
        ready = threading.Event()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            self.ready.set()

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = Server(uvicorn.Config(asgi_app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(timeout=20), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@dataclass
class Served:
    url: str  # ends with "/"
    client: httpx.Client
    embedder: Any


@pytest.fixture(scope="module")
def text_server(generated: ModuleType, tiny_bert: Path) -> Iterator[Served]:
    """BERT, mean pooling, Matryoshka widths [16, 8], API key required, texts only."""
    embedder = generated.load_model(str(tiny_bert), None, "cpu", "float32", multimodal=False)
    web = generated.create_app(embedder, API_KEY, generated.MAX_BODY_BYTES, BATCH, [16, 8])
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with serving(web) as url, httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        yield Served(f"{url}/", client, embedder)


@pytest.fixture(scope="module")
def image_server(generated: ModuleType, tiny_clip: Path) -> Iterator[Served]:
    """CLIP (texts and images), no API key: an open endpoint."""
    embedder = generated.load_model(str(tiny_clip), None, "cpu", "float32", multimodal=True)
    web = generated.create_app(embedder, None, generated.MAX_BODY_BYTES, BATCH, [])
    with serving(web) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Served(f"{url}/", client, embedder)


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def close(a: list[float], b: list[float], tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def reference_bert(folder: Path, text: str, pooling: str) -> list[float]:
    """One text through the model alone (no padding), pooled by hand."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.inference_mode():
        states = model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0]
    pooled = {"mean": states.mean(dim=0), "cls": states[0], "last": states[-1]}[pooling]
    return [float(x) for x in pooled]


def unit(vector: list[float]) -> list[float]:
    length = norm(vector)
    return [x / length for x in vector]


# -- real embeddings -----------------------------------------------------------------------


def test_embed_texts_returns_the_models_vectors(text_server: Served, tiny_bert: Path) -> None:
    texts = ["hello world", "the cat", "a photo of the blue sea"]
    got = text_server.client.post("/embed", json={"texts": texts})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["dimension"] == HIDDEN
    assert (body["num_texts"], body["num_images"]) == (3, 0)
    assert body["normalized"] is True
    assert body["model"] == str(tiny_bert)
    for text, vector in zip(texts, body["embeddings"], strict=True):
        assert abs(norm(vector) - 1) < 1e-5
        assert close(vector, unit(reference_bert(tiny_bert, text, "mean")))


def test_normalisation_can_be_turned_off(text_server: Served, tiny_bert: Path) -> None:
    raw = text_server.client.post("/embed", json={"texts": ["red tree"], "normalize": False})
    assert raw.status_code == 200, raw.text
    assert raw.json()["normalized"] is False
    vector = raw.json()["embeddings"][0]
    assert abs(norm(vector) - 1) > 1e-3, "random weights give a non-unit mean"
    assert close(vector, reference_bert(tiny_bert, "red tree", "mean"))


def test_batch_equals_single_calls_in_input_order(text_server: Served) -> None:
    # Different lengths, so the batch is padded and the mask matters.
    texts = ["a photo of the green tree by the sea", "cat", "hello world", "blue sky"]
    batch = text_server.client.post("/embed", json={"texts": texts}).json()["embeddings"]
    for text, vector in zip(texts, batch, strict=True):
        single = text_server.client.post("/embed", json={"texts": [text]}).json()
        assert close(single["embeddings"][0], vector, 1e-5), text


def test_matryoshka_width_truncates_then_normalises(text_server: Served) -> None:
    full = text_server.client.post("/embed", json={"texts": ["cat"], "normalize": False}).json()
    short = text_server.client.post("/embed", json={"texts": ["cat"], "dimensions": 8}).json()
    assert short["dimension"] == 8
    assert close(short["embeddings"][0], unit(full["embeddings"][0][:8]))


def test_info_and_health(text_server: Served, tiny_bert: Path) -> None:
    import transformers

    info = text_server.client.get("/").json()
    assert info["model"] == str(tiny_bert)
    assert info["revision"] is None
    assert info["dimension"] == HIDDEN
    assert info["engine"] == "transformers"
    assert info["engine_version"] == transformers.__version__
    assert (info["pooling"], info["normalize"], info["batch_size"]) == ("mean", True, BATCH)
    assert info["multimodal"] is False
    health = httpx.get(text_server.url + "health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooling_follows_the_spec(generated: ModuleType, tiny_bert: Path, pooling: str) -> None:
    embedder = generated.load_model(
        str(tiny_bert), None, "cpu", "float32", pooling=pooling, normalize=False, multimodal=False
    )
    texts = ["the cat", "a photo of the red sky over the sea"]
    for text, vector in zip(texts, embedder.embed_texts(texts), strict=True):
        assert close(vector, reference_bert(tiny_bert, text, pooling)), (pooling, text)


def test_max_model_len_truncates(generated: ModuleType, tiny_bert: Path) -> None:
    short = generated.load_model(
        str(tiny_bert), None, "cpu", "float32", max_length=4, multimodal=False
    )
    first, second = short.embed_texts(["hello world the cat", "hello world blue sea"])
    assert close(first, second, 1e-6), "both are [CLS] hello world [SEP] after truncation"
    # Unset: the tokenizer's limit (48) keeps a long text inside BERT's 64 positions.
    default = generated.load_model(str(tiny_bert), None, "cpu", "float32", multimodal=False)
    assert default.max_length == 48
    assert len(default.embed_texts([" ".join(WORDS * 10)])[0]) == HIDDEN


def test_multimodal_needs_an_image_processor(generated: ModuleType, tiny_bert: Path) -> None:
    with pytest.raises(ValueError, match="has no image processor"):
        generated.load_model(str(tiny_bert), None, "cpu", "float32", multimodal=True)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pool_finds_real_tokens_on_either_padding_side(generated: ModuleType, side: str) -> None:
    """Token states numbered by position: the pooled value says which positions were taken."""
    import torch

    lengths = [2, 5]
    width = max(lengths)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        if side == "right":
            mask[row, :length] = 1
        else:
            mask[row, width - length :] = 1
    hidden = torch.arange(width, dtype=torch.float32).repeat(len(lengths), 1).unsqueeze(-1)
    positions = [[i for i in range(width) if mask[row, i]] for row in range(len(lengths))]
    assert generated.pool(hidden, mask, "cls")[:, 0].tolist() == [p[0] for p in positions]
    assert generated.pool(hidden, mask, "last")[:, 0].tolist() == [p[-1] for p in positions]
    means = generated.pool(hidden, mask, "mean")[:, 0].tolist()
    assert means == [sum(p) / len(p) for p in positions]
    with pytest.raises(ValueError, match="unknown pooling"):
        generated.pool(hidden, mask, "max")


def test_images_and_texts_through_a_dual_encoder(image_server: Served, tiny_clip: Path) -> None:
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    red, blue = png((255, 0, 0)), png((0, 0, 255), (20, 50))
    payload = {
        "texts": ["a photo of a cat"],
        "images": [b64(red), "data:image/png;base64," + b64(blue)],
    }
    got = image_server.client.post("/embed", json=payload)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["dimension"] == PROJECTION
    assert (body["num_texts"], body["num_images"]) == (1, 2)
    assert len(body["embeddings"]) == 3  # texts first, then images, each in order

    # Reference: the vision tower and projection by hand.
    model = AutoModel.from_pretrained(tiny_clip, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(tiny_clip)
    for data, vector in zip([red, blue], body["embeddings"][1:], strict=True):
        pixels = processor(images=[Image.open(io.BytesIO(data))], return_tensors="pt")
        with torch.inference_mode():
            pooled = model.vision_model(pixel_values=pixels["pixel_values"]).pooler_output
            expected = model.visual_projection(pooled)[0]
        assert close(vector, unit([float(x) for x in expected]))
    assert not close(body["embeddings"][1], body["embeddings"][2])

    alone = image_server.client.post("/embed", json={"images": [b64(blue)]}).json()
    assert close(alone["embeddings"][0], body["embeddings"][2], 1e-5)


def test_images_through_one_tower_vision_language_model(
    generated: ModuleType, tiny_gemma3: Path
) -> None:
    """Gemma 3: each image with the processor's image marker, pooled at the last token."""
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    embedder = generated.load_model(
        str(tiny_gemma3), None, "cpu", "float32", pooling="last", multimodal=True
    )
    assert not embedder.dual_encoder
    web = generated.create_app(embedder, None, generated.MAX_BODY_BYTES, BATCH, [])
    red, blue = png((255, 0, 0)), png((0, 0, 255), (20, 50))
    with serving(web) as url:
        payload = {"texts": ["the red cat", "hello"], "images": [b64(red), b64(blue)]}
        got = httpx.post(f"{url}/embed", json=payload, timeout=30)
        assert got.status_code == 200, got.text
        body = got.json()
        alone = httpx.post(f"{url}/embed", json={"images": [b64(blue)]}, timeout=30).json()
    assert (body["dimension"], body["num_texts"], body["num_images"]) == (32, 2, 2)
    assert close(alone["embeddings"][0], body["embeddings"][3], 1e-5)

    model = AutoModel.from_pretrained(tiny_gemma3, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(tiny_gemma3)
    for data, vector in zip([red, blue], body["embeddings"][2:], strict=True):
        picture = Image.open(io.BytesIO(data)).convert("RGB")
        inputs = processor(images=[[picture]], text=["<start_of_image>"], return_tensors="pt")
        assert (inputs["input_ids"][0] == processor.tokenizer.image_token_id).sum() == 4
        with torch.inference_mode():
            last = model(**inputs).last_hidden_state[0, -1]
        assert close(vector, unit([float(x) for x in last]))
    with torch.inference_mode():
        encoded = processor.tokenizer(["hello"], return_tensors="pt")
        last = model(**encoded).last_hidden_state[0, -1]
    assert close(body["embeddings"][1], unit([float(x) for x in last]))


def test_open_server_needs_no_key(image_server: Served) -> None:
    assert image_server.client.get("/").status_code == 200


# -- bad input: 4xx, OpenAI-style JSON -----------------------------------------------------

NOT_BASE64 = "this is not base64!"
NOT_AN_IMAGE = b64(b"GIF89a but not really an image")
BAD_REQUESTS: dict[str, tuple[Any, int, str | None]] = {
    # name: (JSON body, or raw bytes; status; param)
    "bad-base64": ({"images": [NOT_BASE64]}, 400, "images[0]"),
    "not-an-image": ({"images": [b64(png((0, 0, 0))), NOT_AN_IMAGE]}, 400, "images[1]"),
    "empty-list": ({"texts": []}, 400, None),
    "empty-body": ({}, 400, None),
    "oversized-batch": (
        {"texts": ["cat"] * (BATCH - 1), "images": [b64(png((1, 2, 3)))] * 2},
        413,
        None,
    ),
    "not-json": (b"{texts: [cat]}", 400, None),
    "json-list": ([["cat"]], 400, None),
    "texts-not-a-list": ({"texts": "cat"}, 400, "texts"),
    "texts-not-strings": ({"texts": ["cat", 3]}, 400, "texts"),
    "images-not-strings": ({"images": [{"url": "x"}]}, 400, "images"),
    "normalize-not-bool": ({"texts": ["cat"], "normalize": "yes"}, 400, "normalize"),
    "unknown-field": ({"text": ["cat"]}, 400, "text"),
    "dimensions-unknown": ({"texts": ["cat"], "dimensions": 5}, 400, "dimensions"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_json_error(image_server: Served, name: str) -> None:
    body, status, param = BAD_REQUESTS[name]
    if isinstance(body, bytes):
        got = image_server.client.post(
            "/embed", content=body, headers={"content-type": "application/json"}
        )
    else:
        got = image_server.client.post("/embed", json=body)
    assert got.status_code == status, got.text
    error = got.json()["error"]
    assert error["code"] == status
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_images_refused_when_not_multimodal(text_server: Served) -> None:
    got = text_server.client.post("/embed", json={"images": [b64(png((9, 9, 9)))]})
    assert got.status_code == 400
    assert got.json()["error"]["param"] == "images"


def png_of_size(width: int, height: int, *, pixels: bool = True) -> bytes:
    """A black greyscale PNG of ``width`` x ``height``, compressed row by row: kilobytes for
    any size. ``pixels`` False leaves its IDAT empty: only the header's size is real."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    packer = zlib.compressobj(9)
    row = bytes(1 + width)  # filter type 0, then one byte per pixel
    rows = b"".join(packer.compress(row) for _ in range(height if pixels else 0))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", rows + packer.flush()) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


@pytest.mark.parametrize(
    ("width", "height", "pixels"),
    [(100_000, 100_000, False), (8_000, 8_000, True)],
    ids=["header-claims-10-gigapixels", "64-megapixels-of-black"],
)
def test_an_image_past_the_pixel_limit_is_a_413(
    image_server: Served, width: int, height: int, pixels: bool
) -> None:
    """A few kilobytes may declare any size; past 40 megapixels the image is refused before
    it is decoded (the second decodes, to 64 MB, without the limit)."""
    bomb = png_of_size(width, height, pixels=pixels)
    assert len(bomb) < 100_000
    payload = {"images": [b64(png((1, 2, 3))), b64(bomb)]}
    got = image_server.client.post("/embed", json=payload)
    assert got.status_code == 413, got.text
    error = got.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "images[1]")
    assert error["message"] == "images[1] has more than 40000000 pixels: send a smaller image"


def test_an_unknown_field_is_named_by_a_short_printable_excerpt(text_server: Served) -> None:
    got = text_server.client.post("/embed", json={"texts": ["cat"], "\u202e" + "x" * 900: 1})
    assert got.status_code == 400
    error = got.json()["error"]
    assert error["message"].startswith("unknown field '\\u202exxx")
    assert "\u202e" not in error["message"] and "x" * 80 not in error["message"]
    assert error["param"] is None


def test_unknown_route_is_a_json_404(text_server: Served) -> None:
    got = text_server.client.get("/v1/embeddings")
    assert got.status_code == 404
    assert got.json()["error"]["type"] == "not_found_error"


# -- the guard in front of the app: one table for every generated endpoint ------------------


class StandInEmbedder:
    """What create_app needs of a TransformersEmbedder, recording every batch it is given:
    a request the guard refuses never reaches it."""

    name, revision, dimension = "org/stand-in", None, 2
    multimodal, pooling, normalize = False, "mean", True

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_texts(self, texts: list[str], normalize: Any = None, dimensions: Any = None) -> Any:
        self.calls.append(texts)
        return [[0.6, 0.8] for _ in texts]


@pytest.fixture
def guarded(generated: ModuleType) -> Iterator[tuple[int, StandInEmbedder]]:
    """create_app with the API key and a body limit of LIMIT bytes, under uvicorn."""
    embedder = StandInEmbedder()
    with running_asgi(generated.create_app(embedder, API_KEY, LIMIT, BATCH, [])) as port:
        yield port, embedder


EMBED = json.dumps({"texts": ["cat"]}).encode()


@pytest.mark.parametrize(
    ("headers", "status"),
    [(headers, status) for _, headers, status in refused_credentials(API_KEY)],
    ids=[case for case, _, _ in refused_credentials(API_KEY)],
)
def test_the_app_refuses_bad_credentials_before_the_model_sees_them(
    guarded: tuple[int, StandInEmbedder], headers: list[tuple[str, str]], status: int
) -> None:
    port, embedder = guarded
    for method, path in [("POST", "/embed"), ("GET", "/"), ("GET", "/docs")]:
        assert_refused(send_raw(port, method, path, headers, EMBED), status)
    assert embedder.calls == [], "a refused request reached the model"
    assert send_raw(port, "GET", "/health", headers).status == 200, "/health needs no key"


def test_the_app_takes_the_right_key(guarded: tuple[int, StandInEmbedder]) -> None:
    port, embedder = guarded
    for headers in accepted_credentials(API_KEY):
        answer = send_raw(port, "POST", "/embed", headers, EMBED)
        assert answer.status == 200, answer.body
        assert answer.json()["embeddings"] == [[0.6, 0.8]]
    assert embedder.calls == [["cat"]] * 3


def test_the_app_takes_a_body_at_the_limit_and_refuses_one_byte_more_unread(
    guarded: tuple[int, StandInEmbedder],
) -> None:
    port, embedder = guarded
    empty = len(json.dumps({"texts": [""]}))
    text = "x" * (LIMIT - empty)
    at_limit = json.dumps({"texts": [text]}).encode()
    assert len(at_limit) == LIMIT
    for chunked in (False, True):
        answer = send_raw(port, "POST", "/embed", bearer(API_KEY), at_limit, chunked=chunked)
        assert answer.status == 200, answer.body
    assert embedder.calls == [[text], [text]]
    embedder.calls.clear()

    over = json.dumps({"texts": [text + "x"]}).encode()
    declared = send_raw(port, "POST", "/embed", bearer(API_KEY), declared=LIMIT + 1)
    chunked = send_raw(port, "POST", "/embed", bearer(API_KEY), over, chunked=True)
    for answer in (declared, chunked):
        assert_openai_error(answer, 413, "invalid_request_error")
    assert embedder.calls == [], "the model saw a refused body"


@each_hostile_json_body
def test_embed_refuses_a_hostile_body_saying_why(
    guarded: tuple[int, StandInEmbedder], body: bytes, says: str
) -> None:
    port, embedder = guarded
    assert_refused_json(send_raw(port, "POST", "/embed", bearer(API_KEY), body), says)
    assert embedder.calls == []


def test_health_is_answered_without_waiting_for_its_body(
    guarded: tuple[int, StandInEmbedder],
) -> None:
    port, _ = guarded
    assert [answer.status for answer in unsent_health_bodies(port)] == [200, 200]


def test_empty_api_key_is_refused(generated: ModuleType) -> None:
    with pytest.raises(ValueError, match="API key is empty"):
        generated.create_app(StandInEmbedder(), "  ", LIMIT)


# -- the Modal class's hooks, run on the CPU ---------------------------------------------------


def user_class(module: ModuleType) -> type:
    """The plain Python class under ``@app.cls`` (Modal keeps it for the container)."""
    cls = getattr(module, CLASS)
    assert isinstance(cls, modal.Cls)
    return cls._get_user_cls()  # type: ignore[no-any-return]


def point_at(module: ModuleType, folder: Path, mp: pytest.MonkeyPatch) -> None:
    """The settings block, redirected to a local folder and the CPU."""
    mp.setattr(module, "MODEL_ID", str(folder))
    mp.setattr(module, "MODEL_REVISION", None)
    mp.setattr(module, "DEVICE", "cpu")


def test_memory_snapshot_loads_on_cpu_then_moves(
    tiny_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with isolated_modal(tmp_path / "home") as mp:
        module = import_source(rendered(spec_data("memory")).source, tmp_path / "apps", mp)
        point_at(module, tiny_clip, mp)
        moves: list[str] = []
        original = module.TransformersEmbedder.to

        def spy(self: Any, device: str) -> None:
            moves.append(device)
            original(self, device)

        mp.setattr(module.TransformersEmbedder, "to", spy)
        server = user_class(module)()
        server.load()  # @modal.enter(snap=True): before the snapshot
        assert str(server.embedder.model.device) == "cpu"
        assert server.embedder.dimension is None, "no forward pass before the snapshot"
        assert moves == []
        server.to_device()  # @modal.enter(snap=False): after the restore
        assert moves == ["cpu"]  # DEVICE, "cuda" in the container
        assert server.embedder.dimension == PROJECTION, "warmed up after the move"

        texts = server.embed(["the cat", "blue sea"])
        assert [len(v) for v in texts] == [PROJECTION, PROJECTION]
        pictures = server.embed_images([png((0, 255, 0)), png((0, 0, 0))], normalize=False)
        assert len(pictures) == 2 and abs(norm(pictures[0]) - 1) > 1e-3


def test_serve_reads_the_key_from_the_secret(
    generated: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = user_class(generated)()  # @modal.asgi_app serve: the key from the secret
    monkeypatch.setenv("API_KEY", "  from-the-secret\n")  # blanks around it do not count
    server.embedder = StandInEmbedder()
    with running_asgi(server.serve()) as port:
        assert send_raw(port, "POST", "/embed", [], EMBED).status == 401
        ok = send_raw(port, "POST", "/embed", bearer("from-the-secret"), EMBED)
        assert ok.status == 200, ok.body
        limit = generated.MAX_BODY_BYTES
        assert limit == 32 * 2**20  # the spec's default max_body
        too_large = send_raw(port, "POST", "/embed", bearer("from-the-secret"), declared=limit + 1)
        assert too_large.status == 413


@pytest.mark.parametrize("value", NO_KEY_VALUES, ids=NO_KEY_IDS)
def test_serve_does_not_start_without_its_api_key(
    generated: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """serve, the ASGI factory Modal calls as the container starts, raises: the start fails
    with this message instead of serving open."""
    set_key(monkeypatch, "API_KEY", value)
    server = user_class(generated)()
    server.embedder = StandInEmbedder()
    with pytest.raises(RuntimeError) as caught:
        server.serve()
    assert str(caught.value) == API_KEY_MISSING.format(secret="tiny-api-key", env="API_KEY")


def test_a_server_the_spec_declares_open_starts_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    surfaces = {"class": False, "http": {"open": True, "max_body": "1MiB"}, "downloader": False}
    source = rendered(spec_data(surfaces=surfaces)).source
    with isolated_modal(tmp_path / "home") as mp:
        module = import_source(source, tmp_path / "apps", mp)
        mp.delenv("API_KEY", raising=False)
        server = module.Server._get_user_cls()()
        server.embedder = StandInEmbedder()
        with running_asgi(server.serve()) as port:
            assert send_raw(port, "POST", "/embed", [], EMBED).status == 200
            assert send_raw(port, "POST", "/embed", declared=2**20 + 1).status == 413
        assert server.embedder.calls == [["cat"]]


def test_spec_dimension_is_checked_at_warm_up(generated: ModuleType, tiny_bert: Path) -> None:
    embedder = generated.load_model(str(tiny_bert), None, "cpu", "float32", multimodal=False)
    assert embedder.warm_up(HIDDEN) == HIDDEN
    with pytest.raises(RuntimeError, match=r"model\.embedding\.dimension: 2560"):
        embedder.warm_up(2560)


# -- what Modal gets ---------------------------------------------------------------------------


class NetworkBlocked(BaseException):
    """Not an Exception, so no client retry loop swallows it."""


def block_network(mp: pytest.MonkeyPatch) -> None:
    """Offline means offline: any connection attempt fails at once."""

    def blocked(*args: object, **kwargs: object) -> None:
        raise NetworkBlocked(f"network access during an offline test: {args!r}")

    for target, name in ((socket.socket, "connect"), (socket, "create_connection")):
        mp.setattr(target, name, blocked)
    mp.setattr(socket, "getaddrinfo", blocked)


def secret_reprs(*names: str) -> list[str]:
    return [repr(modal.Secret.from_name(name)) for name in names]


@pytest.mark.parametrize("snapshot", ["none", "memory", "gpu"])
def test_the_app_offline(snapshot: str, tmp_path: Path) -> None:
    """Read back with the real SDK, nothing deployed (private structures: see
    test_modal_fidelity.private_view, the one place that reads them)."""
    from test_modal_fidelity import private_view

    with isolated_modal(tmp_path / "home") as mp:
        block_network(mp)
        module = import_source(rendered(spec_data(snapshot)).source, tmp_path / "apps", mp)
        instance = getattr(module, CLASS)()
        info = instance.embed.info()
        assert info == instance.serve.info() == instance.embed_images.info()
        assert sorted(info.method_names or []) == ["embed", "embed_images", "serve"]
        assert info.gpus == [("L40S", 1)]
        assert info.secrets == secret_reprs("huggingface", "tiny-api-key")
        assert {path: mount.name for path, mount in info.volumes.items()} == {HF_CACHE: "hf-cache"}
        assert info.concurrency_info is not None and info.concurrency_info.max_inputs == 3
        assert (info.timeout, info.startup_timeout) == (300, 1200)

        view = private_view(module.app)
        assert view.class_names == [CLASS]
        assert view.function_tags == sorted([f"{CLASS}.*", "download_weights"])
        function = view.functions[f"{CLASS}.*"]
        assert function.scaledown_window == 60
        assert function.enable_memory_snapshot is (snapshot != "none")
        gpu_snapshot = {"enable_gpu_snapshot": "True"} if snapshot == "gpu" else {}
        assert function.experimental_options == gpu_snapshot
        assert view.pre_snapshot_hooks[CLASS] == ([] if snapshot == "none" else ["load"])

        downloader = module.download_weights.info()
        assert downloader.gpus == [] and downloader.secrets == secret_reprs("huggingface")


def test_text_only_open_server_without_class_methods(tmp_path: Path) -> None:
    """Class surface off: the server keeps its class (the model loads once per container)."""
    from test_modal_fidelity import private_view

    model = {**spec_data()["model"], "multimodal": False}
    surfaces = {"class": False, "http": {"open": True}, "downloader": False}
    data = spec_data(model=model, surfaces=surfaces)
    source = rendered(data).source
    assert "torchvision" not in source
    with isolated_modal(tmp_path / "home") as mp:
        block_network(mp)
        module = import_source(source, tmp_path / "apps", mp)
        info = module.Server().serve.info()
        assert info.method_names == ["serve"]
        assert info.secrets == secret_reprs("huggingface"), "no API key secret: open"
        assert private_view(module.app).function_tags == ["Server.*"]


@pytest.mark.parametrize("name", ["load_model", "create_app", "pool"])
def test_names_the_module_defines_are_refused(name: str) -> None:
    """The spec refuses them before rendering: they would overwrite the server's code."""
    data = spec_data(surfaces={**spec_data()["surfaces"], "downloader": {"name": name}})
    with pytest.raises(ValidationError, match=f"{name!r} is a name a generated service module"):
        rendered(data)


def created(api: LocalModalServer, tag: str) -> api_pb2.Function:
    requests = [r for r in api.state.requests("FunctionCreate") if r.function.function_name == tag]
    assert requests, f"no FunctionCreate for {tag}"
    return requests[-1].function


@pytest.mark.parametrize("snapshot", ["none", "memory", "gpu"])
def test_deploy_sends_the_snapshot_mode(
    modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot: str
) -> None:
    state = modal_api.state
    state.add_secret("huggingface", ("HF_TOKEN",))
    state.add_secret("tiny-api-key", ("API_KEY",))
    data = spec_data(snapshot)
    source = rendered(data).source
    module = import_source(source, tmp_path / "apps", monkeypatch)
    modal.runner.deploy_app(module.app, name=data["app"])

    function = created(modal_api, f"{CLASS}.*")
    assert function.checkpointing_enabled is (snapshot != "none")
    gpu_snapshot = {"enable_gpu_snapshot": "True"} if snapshot == "gpu" else {}
    assert dict(function.experimental_options) == gpu_snapshot
    gpu = function.resources.gpu_config
    assert (gpu.gpu_type, gpu.count) == ("L40S", 1)
    assert function.autoscaler_settings.scaledown_window == 60
    assert function.max_concurrent_inputs == 3
    assert state.secret_names(function.secret_ids) == ["huggingface", "tiny-api-key"]
    assert state.volume_mounts(function) == {HF_CACHE: "hf-cache"}
    assert function.is_class
    methods = function.method_definitions
    assert sorted(methods) == ["embed", "embed_images", "serve"]
    assert methods["serve"].webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    assert methods["embed"].webhook_config.type == api_pb2.WEBHOOK_TYPE_UNSPECIFIED
    assert function.definition_type == api_pb2.Function.DEFINITION_TYPE_FILE
    uploaded = state.app_files(data["app"])
    assert uploaded[f"/root/{module.__name__}.py"] == source.encode()

    downloader = created(modal_api, "download_weights")
    assert not downloader.resources.gpu_config.gpu_type
    assert state.secret_names(downloader.secret_ids) == ["huggingface"]


def test_deploy_sends_reserved_memory_and_cpu_without_an_http_surface(
    modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resources reach Modal as the function's requests, also for a class-only app."""
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    data = spec_data(
        resources={"memory": "24GiB", "cpu": 2.5},
        scaling={"scaledown_window": "60s"},
        surfaces={"class": {"name": CLASS}, "http": False, "downloader": False},
    )
    module = import_source(rendered(data).source, tmp_path / "apps", monkeypatch)
    modal.runner.deploy_app(module.app, name=data["app"])

    resources = created(modal_api, f"{CLASS}.*").resources
    assert (resources.memory_mb, resources.milli_cpu) == (24 * 1024, 2500)
    assert resources.memory_mb_max == 0  # a request, not a hard limit


def test_deploy_the_example(
    modal_api: LocalModalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 002's HF server: L40S, GPU snapshot, 60 s scaledown, key from its own secret."""
    state = modal_api.state
    state.add_secret("huggingface", ("HF_TOKEN",))
    state.add_secret("netraembed-api-key", ("API_KEY",))
    loaded = load_spec(EXAMPLE)
    module = import_source(render(loaded).source, tmp_path / "apps", monkeypatch)
    modal.runner.deploy_app(module.app, name=loaded.spec.app)

    function = created(modal_api, "NetraEmbedder.*")
    assert function.resources.gpu_config.gpu_type == "L40S"
    assert function.checkpointing_enabled
    assert dict(function.experimental_options) == {"enable_gpu_snapshot": "True"}
    assert function.autoscaler_settings.scaledown_window == 60
    assert function.max_concurrent_inputs == 8
    assert state.secret_names(function.secret_ids) == ["huggingface", "netraembed-api-key"]
    serve = function.method_definitions["serve"]
    assert serve.webhook_config.type == api_pb2.WEBHOOK_TYPE_ASGI_APP
    assert module.BATCH_SIZE == 16 and module.MULTIMODAL is True
    assert module.EXPECTED_DIMENSION == 2560
    layers = "\n".join(
        command
        for request in state.requests("ImageGetOrCreate")
        for command in request.image.dockerfile_commands
    )
    for pin in ("torch==2.13.0", "transformers==5.20.2", "torchvision==0.28.0"):
        assert pin in layers, f"{pin} not installed in the image"


@pytest.mark.parametrize(
    "http",
    [
        {"proxy_auth": True},
        {"api_key_secret": "tiny-api-key", "api_key_env": "API_KEY", "proxy_auth": True},
    ],
    ids=["proxy-only", "proxy-and-key"],
)
def test_deploy_sends_modals_proxy_auth(
    modal_api: LocalModalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    http: dict[str, Any],
) -> None:
    """proxy_auth: the /embed endpoint asks Modal for proxy auth; alone, no key secret is
    attached (the guard checks no Bearer key), with a key both are required."""
    modal_api.state.add_secret("huggingface", ("HF_TOKEN",))
    modal_api.state.add_secret("tiny-api-key", ("API_KEY",))
    data = spec_data(surfaces={"class": {"name": CLASS}, "http": http})
    module = import_source(rendered(data).source, tmp_path / "apps", monkeypatch)
    modal.runner.deploy_app(module.app, name=data["app"])

    function = created(modal_api, f"{CLASS}.*")
    assert function.method_definitions["serve"].webhook_config.requires_proxy_auth is True
    key = ["tiny-api-key"] if "api_key_secret" in http else []
    assert modal_api.state.secret_names(function.secret_ids) == ["huggingface", *key]
