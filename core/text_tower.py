"""open_clip's text tower over the real token length, with the vectors of the full length.

The tokenizer pads every text to the context length (77 for CLIP), and open_clip runs the
transformer over every position. With a causal mask, position ``i`` attends only to positions
``<= i``, so the features at the pooled position never depend on the padding after it: running
the transformer over the first ``max(pooled index) + 1`` positions of the batch, with the mask
sliced to that size, gives the same pooled features (up to float summation order, ~1e-7).

That is only proved for towers whose forward we reproduce step by step: open_clip's ``CLIP``
and ``CustomTextCLIP`` with its own ``TextTransformer``, a strictly causal mask, no class token
or padding mask, and pooling at a token index (``argmax``, ``eos``, ``first``). Any other tower
(Hugging Face text models, bidirectional SigLIP towers, ``last`` pooling, CoCa's class token, a
subclass that overrides a step) runs open_clip's own full-length ``encode_text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_INDEX_POOLS = ("argmax", "eos", "first")


@dataclass(frozen=True, slots=True)
class _Parts:
    """The modules of a causal text tower, in the order its forward uses them."""

    token_embedding: Any
    positional_embedding: Any
    transformer: Any
    attn_mask: Any
    ln_final: Any
    text_projection: Any
    pool_type: str
    eos_id: int | None


class TextTower:
    """``encode(tokens)`` equals ``model.encode_text(tokens)``; trimmed where that is proved."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._parts = _trimmable_parts(model)

    @property
    def trims(self) -> bool:
        """Whether texts run over their real length (False: open_clip's full-length path)."""
        return self._parts is not None

    def encode(self, tokens: Any, trim: bool = True) -> Any:
        """Pooled, projected (not normalized) features of (N, context) tokens."""
        parts = self._parts
        if parts is None or not trim:
            return self._model.encode_text(tokens)
        import torch

        index = _pool_index(tokens, parts)
        length = int(index.max()) + 1 if tokens.shape[0] else 1
        cast_dtype = parts.transformer.get_cast_dtype()
        x = parts.token_embedding(tokens[:, :length]).to(cast_dtype)
        x = x + parts.positional_embedding[:length].to(cast_dtype)
        mask = parts.attn_mask[:length, :length].contiguous()
        x = parts.transformer(x, attn_mask=mask)
        x = parts.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), index]
        projection = parts.text_projection
        if projection is None:
            return pooled
        if isinstance(projection, torch.nn.Linear):
            return projection(pooled)
        return pooled @ projection


def _pool_index(tokens: Any, parts: _Parts) -> Any:
    """The position open_clip's ``text_global_pool`` reads, computed on the full tokens."""
    import torch

    if parts.pool_type == "argmax":
        return tokens.argmax(dim=-1)
    if parts.pool_type == "eos":
        return (tokens == parts.eos_id).int().argmax(dim=-1)
    return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)


def _trimmable_parts(model: Any) -> _Parts | None:
    """The tower's parts when trimming is proved exact for it, else None."""
    from core.torch_compat import import_open_clip

    import_open_clip()  # the torchvision work-around first, then open_clip's own modules
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transformer import TextTransformer, Transformer

    model_type = type(model)
    if isinstance(model, CLIP) and model_type.encode_text is CLIP.encode_text:
        parts = _parts_of(model, model.text_pool_type, getattr(model, "text_eos_id", None))
    elif isinstance(model, CustomTextCLIP) and model_type.encode_text is CustomTextCLIP.encode_text:
        text = model.text
        plain = type(text) is TextTransformer and text.cls_emb is None
        if not plain or text.use_pad_mask or text.output_tokens:
            return None
        parts = _parts_of(text, text.pool_type, text.eos_id)
    else:
        return None
    if type(parts.transformer).forward is not Transformer.forward:
        return None
    if parts.pool_type not in _INDEX_POOLS or not _is_causal(parts.attn_mask):
        return None
    if parts.pool_type == "eos" and parts.eos_id is None:
        return None
    if parts.positional_embedding.shape[0] != parts.attn_mask.shape[0]:
        return None
    return parts


def _parts_of(tower: Any, pool_type: str, eos_id: int | None) -> _Parts:
    return _Parts(
        token_embedding=tower.token_embedding,
        positional_embedding=tower.positional_embedding,
        transformer=tower.transformer,
        attn_mask=getattr(tower, "attn_mask", None),
        ln_final=tower.ln_final,
        text_projection=tower.text_projection,
        pool_type=str(pool_type),
        eos_id=eos_id,
    )


def _is_causal(mask: Any) -> bool:
    """Exactly open_clip's ``build_causal_mask``: 0 on and below the diagonal, -inf above."""
    import torch

    if mask is None or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    size = mask.shape[0]
    expected = torch.full((size, size), float("-inf"), device=mask.device).triu_(1)
    return bool(torch.equal(mask.float(), expected))
