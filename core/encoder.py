"""CLIP encoders behind one small typed interface.

``OpenClipEncoder`` loads an open_clip model once, lazily, under a lock. Images arrive as uint8
NHWC arrays from :mod:`core.preprocess`; scaling and normalization happen on the device, in
float32. Every vector leaves L2-normalized float32.

Precision (fp32, fp16/bf16 autocast, int8 on the CPU) is described in :mod:`core.placement`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
from numpy.typing import NDArray

from core.model_names import RANDOM_WEIGHTS as RANDOM_WEIGHTS  # re-exported
from core.model_names import TINY_MODEL as TINY_MODEL  # re-exported
from core.model_names import names_a_file, unknown_architecture
from core.model_names import register_builtin_configs as register_builtin_configs  # re-exported
from core.paths import expand_user
from core.placement import INT8, autocast_dtype, count_quantized, quantize_int8, torch_device
from core.placement import ModelUnavailable as ModelUnavailable  # re-exported
from core.preprocess import PreprocessConfig
from core.settings import Settings
from core.text_tower import TextTower

_RANDOM_SEED = 0
# How long to wait for the Hugging Face hub before weights that are not cached are called
# unreachable (DNS and TCP connect, in a thread: getaddrinfo itself has no timeout).
HUB_PROBE_SECONDS = 2.0

Vectors = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Everything that makes two vectors comparable. Stored with each index version."""

    architecture: str
    pretrained: str
    open_clip_version: str
    preprocess: dict[str, Any] = field(hash=False)
    dim: int

    @property
    def random_weights(self) -> bool:
        return self.pretrained == RANDOM_WEIGHTS

    @property
    def label(self) -> str:
        if self.random_weights:
            return f"{self.architecture} (RANDOM WEIGHTS - test model, rankings are meaningless)"
        return f"{self.architecture} ({self.pretrained})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "pretrained": self.pretrained,
            "open_clip_version": self.open_clip_version,
            "preprocess": self.preprocess,
            "dim": self.dim,
            "random_weights": self.random_weights,
            "label": self.label,
        }


@dataclass(frozen=True, slots=True)
class DeclaredModel:
    """Architecture and pretrained tag as configured: known without loading the model, and
    enough to tell whether a stored index version was built by this model."""

    architecture: str
    pretrained: str


class Encoder(Protocol):
    """What ingest and search need from a model. Fakes implement this in unit tests."""

    @property
    def declared(self) -> DeclaredModel:
        """Cheap: never loads the model."""
        ...

    @property
    def identity(self) -> ModelIdentity:
        """The full identity (loads the model)."""
        ...

    @property
    def preprocess(self) -> PreprocessConfig: ...

    def encode_images(self, pixels: NDArray[np.uint8]) -> Vectors:
        """(N, H, W, 3) uint8 from :func:`core.preprocess.to_model_input` -> (N, dim)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> Vectors: ...

    @property
    def logit_scale(self) -> float:
        """The model's learned temperature (exp of logit_scale): softmax(scale * cosine)."""
        ...


@dataclass(frozen=True, slots=True)
class ModelSpec:
    model: str
    pretrained: str
    device: str = "auto"
    precision: str = "fp32"

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelSpec:
        return cls(settings.model, settings.pretrained, settings.device, settings.precision)

    @property
    def declared(self) -> DeclaredModel:
        random = self.model == TINY_MODEL or self.pretrained == RANDOM_WEIGHTS
        return DeclaredModel(self.model, RANDOM_WEIGHTS if random else self.pretrained)


class OpenClipEncoder:
    """The real encoder. Construction is cheap; the model loads on first use."""

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    @property
    def declared(self) -> DeclaredModel:
        return self._spec.declared

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def precision(self) -> str:
        """CLIPDEX_PRECISION as configured (fp32, fp16, bf16 or int8); not part of the identity."""
        return self._spec.precision

    @property
    def parameter_devices(self) -> set[str]:
        """Where the loaded model's parameters and buffers live (loads the model)."""
        return self._load().parameter_devices()

    @property
    def quantized_layers(self) -> int:
        """How many layers run in dynamic int8 (loads the model): 0 unless precision is int8."""
        return self._load().quantized_layers

    @property
    def identity(self) -> ModelIdentity:
        return self._load().identity

    @property
    def preprocess(self) -> PreprocessConfig:
        return self._load().preprocess

    def encode_images(self, pixels: NDArray[np.uint8]) -> Vectors:
        return self._load().encode_images(pixels)

    def encode_texts(self, texts: Sequence[str]) -> Vectors:
        return self._load().encode_texts(texts)

    @property
    def logit_scale(self) -> float:
        return self._load().logit_scale

    def _load(self) -> _Loaded:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = _Loaded.create(self._spec)
        return self._loaded


class _Loaded:
    """A loaded model with its tokenizer, device and normalization constants."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec, device: Any) -> None:
        import torch

        from core.torch_compat import import_open_clip

        self._torch = torch
        self._model = model
        self._text = TextTower(model)
        self._tokenizer = tokenizer
        self._device = device
        self._autocast_dtype = autocast_dtype(spec.precision)
        self.quantized_layers = count_quantized(model)
        self.preprocess = PreprocessConfig.from_open_clip(model.visual.preprocess_cfg)
        self.logit_scale = float(model.logit_scale.detach().exp().reshape(-1)[0])
        self._mean = torch.tensor(self.preprocess.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.preprocess.std, device=device).view(1, 3, 1, 1)
        self.identity = ModelIdentity(
            architecture=spec.model,
            pretrained=spec.declared.pretrained,
            open_clip_version=str(import_open_clip().__version__),
            preprocess=self.preprocess.as_dict(),
            dim=int(model.text_projection.shape[1])
            if _has_text_projection(model)
            else int(model.encode_text(tokenizer(["x"]).to(device)).shape[-1]),
        )

    @classmethod
    def create(cls, spec: ModelSpec) -> _Loaded:
        from core.torch_compat import import_open_clip

        # imports torch first; refuses a device this machine lacks, or int8 off the CPU
        device = torch_device(spec.device, spec.precision)
        open_clip = import_open_clip()
        problem = unknown_architecture(open_clip, spec.model)  # registers the built-in configs
        if problem is not None:
            raise ModelUnavailable(problem)
        model = _create_model(open_clip, spec, device)
        model.eval()
        if spec.precision == INT8:
            quantize_int8(model, spec.model)
        tokenizer = open_clip.get_tokenizer(spec.model)
        return cls(model, tokenizer, spec, device)

    def encode_images(self, pixels: NDArray[np.uint8]) -> Vectors:
        torch = self._torch
        if pixels.ndim != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 pixels, got shape {pixels.shape}")
        with torch.inference_mode():
            batch = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"]))
            if self._device.type == "cuda":
                # A page-locked copy lets the host-to-device copy run asynchronously; the
                # kernels below are queued on the same stream, so they wait for it.
                batch = batch.pin_memory().to(self._device, non_blocking=True)
            else:
                batch = batch.to(self._device)
            # Same float ops, in the same order, as torchvision ToTensor + Normalize, in
            # float32 whatever the precision: autocast covers the model's forward only.
            images = batch.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
            images = images.sub(self._mean).div(self._std)
            with self._autocast():
                features = self._model.encode_image(images)
        return _normalized(features)

    def encode_texts(self, texts: Sequence[str]) -> Vectors:
        torch = self._torch
        with torch.inference_mode(), self._autocast():
            tokens = self._tokenizer(list(texts)).to(self._device)
            features = self._text.encode(tokens)
        return _normalized(features)

    def parameter_devices(self) -> set[str]:
        tensors = [*self._model.parameters(), *self._model.buffers()]
        return {str(tensor.device) for tensor in tensors}

    def _autocast(self) -> Any:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(self._device.type, dtype=self._autocast_dtype)


def _has_text_projection(model: Any) -> bool:
    projection = getattr(model, "text_projection", None)
    return projection is not None and hasattr(projection, "shape") and len(projection.shape) == 2


def _normalized(features: Any) -> Vectors:
    array = features.float().cpu().numpy().astype(np.float32, copy=False)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.asarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


def _create_model(open_clip: Any, spec: ModelSpec, device: Any) -> Any:
    import torch

    if spec.model == TINY_MODEL or spec.pretrained == RANDOM_WEIGHTS:
        # open_clip logs "initialized randomly" on the root logger; here that is the intent.
        root_logger = logging.getLogger()
        level = root_logger.level
        root_logger.setLevel(logging.ERROR)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_RANDOM_SEED)
                return open_clip.create_model(spec.model, pretrained=None, device=device)
        finally:
            root_logger.setLevel(level)
    if spec.pretrained.startswith("hf-hub:"):
        return _load_weights(spec, lambda: open_clip.create_model(spec.pretrained, device=device))
    path = expand_user(Path(spec.pretrained))
    if names_a_file(spec.pretrained):
        if not path.is_file():
            raise ModelUnavailable(
                f"CLIPDEX_PRETRAINED points at {str(path)!r}, which is not a file. "
                f"Give the path of an open_clip checkpoint for {spec.model}."
            )
        return _load_weights(
            spec,
            lambda: open_clip.create_model(
                spec.model, pretrained=str(path), device=device, require_pretrained=True
            ),
            hub=False,
        )
    return _load_weights(
        spec,
        lambda: open_clip.create_model(
            spec.model, pretrained=spec.pretrained, device=device, require_pretrained=True
        ),
    )


def _load_weights(spec: ModelSpec, create: Callable[[], Any], hub: bool = True) -> Any:
    """Weights from a checkpoint file, or (``hub``) named by a tag or an ``hf-hub:`` id. Hub
    weights: a short probe first; when the hub cannot be reached they come from the local cache
    alone, so an offline machine fails in seconds with one line, not a minute of retries."""
    from huggingface_hub import constants  # open_clip's own dependency

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    offline, why = constants.HF_HUB_OFFLINE, None
    if hub and offline:
        why = "HF_HUB_OFFLINE is set and they are not in the local cache"
    elif hub and not _reachable((host, port), HUB_PROBE_SECONDS):
        why = f"they are not in the local cache and {host} cannot be reached"
    constants.HF_HUB_OFFLINE = offline or why is not None
    try:
        with _quiet():
            return create()
    except Exception as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        why = why or f"{type(error).__name__}: {lines[0] if lines else ''}"
        raise ModelUnavailable(
            f"could not load weights {spec.pretrained!r} for model {spec.model!r} ({why}). If "
            "this machine cannot download them, fetch the open_clip checkpoint on a machine that "
            "can (e.g. open_clip_pytorch_model.bin from the model's Hugging Face repo) and set "
            f"CLIPDEX_PRETRAINED=/path/to/that/file, keeping CLIPDEX_MODEL at {spec.model!r}; "
            f"for an offline smoke run use CLIPDEX_MODEL={TINY_MODEL} (random weights, results "
            "meaningless)."
        ) from error
    finally:
        constants.HF_HUB_OFFLINE = offline


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Loading weights: the libraries' warnings and log lines (hub retries, deprecations) stay
    off stderr; failures become one ModelUnavailable message instead."""
    disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def _reachable(endpoint: tuple[str, int], timeout: float) -> bool:
    """A TCP connection to ``endpoint`` within ``timeout`` seconds, name lookup included."""
    result: list[bool] = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection(endpoint, timeout=timeout):
            result.append(True)

    thread = threading.Thread(target=probe, name="clipdex-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)
