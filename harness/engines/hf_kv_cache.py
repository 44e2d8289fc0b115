"""KV-cache reuse for the hf engine: run token rows after a cache, copy cache rows, score continuations.

A context shared by several requests (every choice of a multiple-choice question; a few-shot prefix every prompt of
a batch shares) runs once; copies of its cache stand in for it. Only a full-attention DynamicCache can be copied
row by row (``plain_dynamic``); the engine falls back to the plain path for any other. torch and transformers are
imported inside the functions, so importing the engine registry stays cheap.
"""
from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=None)
def cache_field() -> str:
    # transformers 5 renamed the KV-cache argument and output field ``past_key_values`` to ``cache``.
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def extend(model: Any, pad_token_id: int, device: str, cache: Any, mask: Any, rows: list[list[int]],
           use_cache: bool = True, keep_logits: bool = True) -> tuple[Any, Any, Any]:
    """Run ``rows`` (right-padded) after what ``cache`` holds (one cache row per row, ``mask`` marking its
    real tokens; None: from the start). Positions continue from each row's own length, so padding in the
    cache changes nothing. Returns (logits, cache, mask over cache + rows)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    new_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, : len(r)] = torch.tensor(r)
        new_mask[k, : len(r)] = 1
    kwargs: dict[str, Any] = {} if keep_logits else {"logits_to_keep": 1}
    if cache is not None:
        kwargs[cache_field()] = cache
        kwargs["position_ids"] = (mask.sum(1, keepdim=True) + torch.arange(width)).to(device)
        new_mask = torch.cat([mask, new_mask], 1)
    try:
        res = model(input_ids=ids.to(device), attention_mask=new_mask.to(device), use_cache=use_cache, **kwargs)
    except TypeError:  # a model without ``logits_to_keep``: all logits, the same cache
        if kwargs.pop("logits_to_keep", None) is None:
            raise
        res = model(input_ids=ids.to(device), attention_mask=new_mask.to(device), use_cache=use_cache, **kwargs)
    return res.logits, getattr(res, cache_field()) if use_cache else None, new_mask


def score(logits: Any, target: list[int]) -> tuple[float, bool]:
    """(summed log-probability of ``target``, whether it is the greedy continuation) from the logits that
    predict each of its tokens."""
    import torch

    lp = torch.log_softmax(logits.float(), dim=-1)
    t = torch.tensor(target, device=lp.device)
    return lp.gather(1, t.unsqueeze(1)).sum().item(), bool((lp.argmax(dim=-1) == t).all().item())


def common_prefix_len(seqs: list[list[int]], limit: int) -> int:
    first = seqs[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in seqs[1:]):
        n += 1
    return n


def plain_dynamic(cache: Any) -> bool:
    """A full-attention DynamicCache, whose rows can be copied (sliding-window or recurrent layers cannot)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


def select_rows(cache: Any, mask: Any, rows: list[int]) -> tuple[Any, Any]:
    """A new cache (and mask) holding copies of ``rows`` of ``cache``; the original is left as it was."""
    import torch
    from transformers.cache_utils import DynamicCache

    idx = torch.tensor(rows, device=cache.layers[0].keys.device)
    new = DynamicCache([(layer.keys.index_select(0, idx), layer.values.index_select(0, idx))
                        for layer in cache.layers])
    return new, mask[torch.tensor(rows)]
