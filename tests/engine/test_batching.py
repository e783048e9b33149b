"""The encoder's batch size per device, and batched embeddings equal to one-at-a-time ones."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mobilesam.engine.batching import BATCH_ENV, MAX_GPU_BATCH, encode_batch_size
from napari_mobilesam.errors import MobileSAMError


def test_one_slice_at_a_time_off_cuda(monkeypatch):
    monkeypatch.delenv(BATCH_ENV, raising=False)
    assert encode_batch_size("cpu") == 1
    assert encode_batch_size("mps", "float16") == 1


def test_cuda_batches_follow_free_memory_and_precision(monkeypatch):
    monkeypatch.delenv(BATCH_ENV, raising=False)
    gib = 1 << 30
    assert encode_batch_size("cuda", "float32", free_bytes=4 * gib) == 5
    assert encode_batch_size("cuda", "bfloat16", free_bytes=4 * gib) == 10
    assert encode_batch_size("cuda:1", "bfloat16", free_bytes=80 * gib) == MAX_GPU_BATCH
    assert encode_batch_size("cuda", "float32", free_bytes=100 << 20) == 1  # never 0


def test_the_environment_overrides(monkeypatch):
    monkeypatch.setenv(BATCH_ENV, "3")
    assert encode_batch_size("cpu") == 3
    monkeypatch.setenv(BATCH_ENV, "zero")
    with pytest.raises(MobileSAMError, match="is not a batch size"):
        encode_batch_size("cpu")


def test_batched_embeddings_equal_one_at_a_time_for_mixed_sizes(predictor):
    rng = np.random.default_rng(3)
    images = [
        rng.integers(0, 4000, (96, 160), dtype=np.uint16),
        rng.integers(0, 255, (200, 120, 3), dtype=np.uint8),
        rng.random((64, 64)).astype(np.float32),
    ]
    batched = predictor.embed_many(images, batch_size=3)
    assert len(batched) == 3
    for image, embedding in zip(images, batched, strict=True):
        alone = predictor.embed(image)
        assert embedding.original_size == alone.original_size and embedding.input_size == alone.input_size
        np.testing.assert_allclose(embedding.features, alone.features, rtol=0, atol=1e-5)
        assert embedding.features.base is None or embedding.features.base.shape[0] != 3  # not a view of the batch
    # batch_size splits the work but not the results
    in_pairs = predictor.embed_many(images, batch_size=2)
    for a, b in zip(in_pairs, batched, strict=True):
        np.testing.assert_allclose(a.features, b.features, rtol=0, atol=1e-5)
