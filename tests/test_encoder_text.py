"""The text tower over the real token length gives the full-length vectors (core.text_tower)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from core.encoder import ModelSpec, OpenClipEncoder, register_builtin_configs
from core.text_tower import TextTower
from core.torch_compat import import_open_clip

pytestmark = pytest.mark.tiny_real

TEXTS = [
    "",
    "a",
    "a photo of a dog",
    "a red bicycle leaning on a wall in the snow, seen from the left at dusk",
    "word " * 200,  # truncated by the tokenizer: its end-of-text token sits at position 76
    "東京の夜景 🌃 café naïve Ünïcødé",
    "  spaces\tand\nnewlines  ",
]
BOUND = 1e-6

TINY_VISION = {"image_size": 64, "layers": 1, "width": 64, "head_width": 32, "patch_size": 32}
TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


def _seeded(build: Any) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = build()
    return model.eval()


def _custom(**text_cfg: Any) -> Any:
    open_clip = import_open_clip()
    cfg = TINY_TEXT | text_cfg
    return _seeded(lambda: open_clip.CustomTextCLIP(32, TINY_VISION, cfg))


@pytest.fixture(scope="module")
def tokens() -> Iterator[torch.Tensor]:
    yield import_open_clip().get_tokenizer("ViT-B-32")(TEXTS)


def _cosine_gap(model: Any, tokens: torch.Tensor) -> float:
    tower = TextTower(model)
    with torch.inference_mode():
        full = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
        short = torch.nn.functional.normalize(tower.encode(tokens), dim=-1)
    assert short.shape == full.shape
    return float((1 - (full * short).sum(-1)).abs().max())


@pytest.mark.parametrize("name", ["clipdex-tiny", "ViT-B-32"])
def test_trimmed_text_tower_equals_full_length_on_clip_models(
    name: str, tokens: torch.Tensor
) -> None:
    open_clip = import_open_clip()
    register_builtin_configs(open_clip)
    model = _seeded(lambda: open_clip.create_model(name, pretrained=None))
    assert TextTower(model).trims
    assert _cosine_gap(model, tokens) <= BOUND
    for one in range(len(TEXTS)):  # alone, each text runs over its own length only
        assert _cosine_gap(model, tokens[one : one + 1]) <= BOUND
    with torch.inference_mode():
        raw_full = model.encode_text(tokens)
        raw_short = TextTower(model).encode(tokens)
    assert torch.allclose(raw_short, raw_full, atol=1e-5, rtol=1e-5)  # unnormalized too


@pytest.mark.parametrize("cfg", [{"pool_type": "eos", "eos_id": 49407}, {"pool_type": "first"}])
def test_custom_text_towers_with_a_causal_mask_are_trimmed_exactly(
    cfg: dict[str, Any], tokens: torch.Tensor
) -> None:
    model = _custom(**cfg)
    assert TextTower(model).trims
    assert _cosine_gap(model, tokens) <= BOUND


@pytest.mark.parametrize(
    "cfg",
    [
        {"no_causal_mask": True},  # bidirectional: padding changes every position
        {"pool_type": "last"},  # pools a padding position
        {"embed_cls": True},  # CoCa's class token sits after the padding
    ],
)
def test_towers_that_cannot_be_proved_run_the_full_length(
    cfg: dict[str, Any], tokens: torch.Tensor
) -> None:
    model = _custom(**cfg)
    tower = TextTower(model)
    assert not tower.trims
    with torch.inference_mode():
        assert torch.equal(tower.encode(tokens), model.encode_text(tokens))


def test_the_encoder_uses_the_trimmed_tower_with_the_full_length_vectors() -> None:
    open_clip = import_open_clip()
    register_builtin_configs(open_clip)
    encoder = OpenClipEncoder(ModelSpec("clipdex-tiny", "random", device="cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the encoder's own seed for random weights
        model = open_clip.create_model("clipdex-tiny", pretrained=None).eval()
    with torch.inference_mode():
        full = model.encode_text(open_clip.get_tokenizer("clipdex-tiny")(TEXTS))
    expected = torch.nn.functional.normalize(full, dim=-1).numpy()
    vectors = encoder.encode_texts(TEXTS)
    assert np.max(np.abs(vectors - expected)) <= BOUND


def test_an_empty_batch_gives_no_vectors(tokens: torch.Tensor) -> None:
    model = _custom()
    with torch.inference_mode():
        assert TextTower(model).encode(tokens[:0]).shape == (0, 32)
