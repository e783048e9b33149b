"""The two-way blocks in low rank (no per-prompt image tokens) equal the blocks on the image tokens."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_mobilesam.model.low_rank_transformer import low_rank_blocks


def _context(model, seed: int = 0):
    features = torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (1, 256, 64, 64)).astype(np.float32))
    dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    return model.mask_decoder.prepare(features, model.prompt_encoder.get_dense_pe(), dense)


def _tokens(model, kind: str, count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if kind == "points":  # a positive and a negative click per prompt (+ the padding point)
        coords = torch.as_tensor(rng.uniform(0, 1024, (count, 2, 2)), dtype=torch.float32)
        sparse = model.prompt_encoder.embed_sparse((coords, torch.tensor([[1, 0]] * count)), None, None)
    else:
        corners = rng.uniform(0, 900, (count, 2))
        boxes = np.concatenate([corners, corners + rng.uniform(20, 120, (count, 2))], axis=1)
        sparse = model.prompt_encoder.embed_sparse(None, torch.as_tensor(boxes, dtype=torch.float32), None)
    decoder = model.mask_decoder
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    return torch.cat((output_tokens.expand(count, -1, -1), sparse), dim=1)


@pytest.mark.parametrize(("kind", "count"), [("points", 1), ("boxes", 5)])
def test_low_rank_blocks_equal_the_blocks_on_image_tokens(recipe_model, kind, count):
    transformer = recipe_model.mask_decoder.transformer
    with torch.inference_mode():
        context = _context(recipe_model)
        assert context.low_rank is not None
        tokens = _tokens(recipe_model, kind, count, seed=count)
        updates = []
        queries, image_tokens = transformer.blocks(context, tokens, updates)
        final = transformer.final(context, queries, image_tokens, tokens, [0, 2, 3])
        low_queries, factors = low_rank_blocks(transformer, context, tokens)
        low_final = factors.final(transformer, context, low_queries, tokens, [0, 2, 3])
    torch.testing.assert_close(low_queries, queries, atol=2e-5, rtol=0)
    torch.testing.assert_close(low_final, final, atol=2e-5, rtol=0)
    # The norms' statistics come from quadratic forms, not from image tokens: they must agree too.
    for direct, low in zip(updates, (factors.first, factors.second), strict=True):
        torch.testing.assert_close(low.weights, direct.weights, atol=1e-5, rtol=0)
        torch.testing.assert_close(low.values, direct.values, atol=1e-5, rtol=0)
        torch.testing.assert_close(low.mean, direct.mean, atol=1e-5, rtol=0)
        torch.testing.assert_close(low.rstd, direct.rstd, atol=0, rtol=1e-5)
    # Prompts can be finished apart (the decoder's min_iou path selects some of them).
    index = torch.tensor([count - 1])
    with torch.inference_mode():
        one = factors.select(index).final(transformer, context, low_queries[index], tokens[index], [1])
        expected = transformer.final(context, queries, image_tokens, tokens, [1])[index]
    torch.testing.assert_close(one, expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("multimask", [False, True])
def test_decoder_in_low_rank_equals_the_direct_decoder(recipe_model, multimask):
    decoder = recipe_model.mask_decoder
    with torch.inference_mode():
        context = _context(recipe_model, seed=4)
        sparse = _tokens(recipe_model, "boxes", 11, seed=5)[:, 5:]  # more than one chunk, a partial last one
        masks, iou = decoder.decode(context, sparse, multimask)
        direct = replace(context, low_rank=None, upscale_base=None)  # image tokens and the direct head
        direct_masks, direct_iou = decoder.decode(direct, sparse, multimask)
        best = direct_iou.max(dim=1).values.sort().values
        threshold = float(best[5] + best[6]) / 2  # between two prompts' best IoU, clear of rounding
        kept_masks, kept_iou = decoder.decode(context, sparse, multimask, min_iou=threshold)
        direct_kept, _ = decoder.decode(direct, sparse, multimask, min_iou=threshold)  # image tokens selected
    assert masks.abs().max() > 0.5
    torch.testing.assert_close(masks, direct_masks, atol=1e-4, rtol=0)
    torch.testing.assert_close(iou, direct_iou, atol=1e-5, rtol=0)
    kept = (direct_iou > threshold).any(dim=1)
    assert 0 < int(kept.sum()) < len(kept)
    for masks_kept in (kept_masks, direct_kept):
        torch.testing.assert_close(masks_kept[kept], direct_masks[kept], atol=1e-4, rtol=0)
        assert torch.isneginf(masks_kept[~kept]).all()


@pytest.mark.parametrize("count", [1, 11])
def test_mask_prompts_in_low_rank_equal_the_image_token_path(recipe_model, count):
    """A mask prompt's 16-channel addition joins the first block's factors: the same masks as
    decoding on image tokens plus the mask (one image side per mask), in chunks of prompts."""
    decoder, encoder = recipe_model.mask_decoder, recipe_model.prompt_encoder
    rng = np.random.default_rng(count)
    masks = torch.from_numpy(rng.normal(0, 4, (count, 1, 256, 256)).astype(np.float32))
    coords = torch.as_tensor(rng.uniform(0, 1024, (count, 2, 2)), dtype=torch.float32)
    with torch.inference_mode():
        features = torch.from_numpy(rng.normal(0, 1, (1, 256, 64, 64)).astype(np.float32))
        bare = decoder.prepare(features, encoder.get_dense_pe(), 0)
        sparse = encoder.embed_sparse((coords, torch.tensor([[1, 0]] * count)), None, masks)
        low = decoder.prepare_with_masks(bare, encoder.mask_downscaling, masks)
        direct = decoder.prepare_with_masks(replace(bare, low_rank=None), encoder.mask_downscaling, masks)
        assert low.low_rank is not None and low.keys.shape[0] == 1  # no image side per mask
        assert direct.keys.shape[0] == count
        for multimask in (False, True):
            low_masks, low_iou = decoder.decode(low, sparse, multimask)
            direct_masks, direct_iou = decoder.decode(direct, sparse, multimask)
            torch.testing.assert_close(low_masks, direct_masks, atol=1e-4, rtol=0)
            torch.testing.assert_close(low_iou, direct_iou, atol=1e-5, rtol=0)
        threshold = float(direct_iou.max(dim=1).values.min()) - 1e-3  # every prompt kept
        kept_masks, _ = decoder.decode(low, sparse, True, min_iou=threshold)
    torch.testing.assert_close(kept_masks, direct_masks, atol=1e-4, rtol=0)


def test_the_low_rank_share_is_built_only_where_it_pays(recipe_model, monkeypatch):
    """The CPU gets the low-rank share; a device where it does not pay (a GPU) decodes on image
    tokens, with the same masks."""
    from napari_mobilesam.model import mask_decoder

    assert mask_decoder.low_rank_pays_on(torch.device("cpu"))
    assert not mask_decoder.low_rank_pays_on(torch.device("cuda", 0))
    assert not mask_decoder.low_rank_pays_on(torch.device("mps"))
    decoder = recipe_model.mask_decoder
    sparse = _tokens(recipe_model, "points", 3, seed=7)[:, 5:]
    with torch.inference_mode():
        context = _context(recipe_model)
        masks, iou = decoder.decode(context, sparse, True)
        monkeypatch.setattr(mask_decoder, "low_rank_pays_on", lambda device: False)
        tokens_context = _context(recipe_model)
        tokens_masks, tokens_iou = decoder.decode(tokens_context, sparse, True)
    assert context.low_rank is not None
    assert tokens_context.low_rank is None and tokens_context.upscale_base is not None
    torch.testing.assert_close(tokens_masks, masks, atol=1e-4, rtol=0)
    torch.testing.assert_close(tokens_iou, iou, atol=1e-5, rtol=0)
