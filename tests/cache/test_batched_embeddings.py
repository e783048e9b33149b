"""EmbeddingCache.embeddings (several slices, misses encoded together) and precision in the key."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_mobilesam.cache.embedding_cache import EmbeddingCache
from napari_mobilesam.cache.keys import slice_key
from support.fake_encoder import FakeModel, FakePredictor, fake_embedding, image


class BatchingPredictor(FakePredictor):
    """Records each ``embed_many`` call's size."""

    def __init__(self, precision: str = "float32", **kwargs) -> None:
        super().__init__(**kwargs)
        self.precision = precision
        self.batches: list[int] = []

    def embed_many(self, images, contrast_limits=None, batch_size=None):
        self.batches.append(len(images))
        return [fake_embedding(one, contrast_limits) for one in images]


def test_misses_are_encoded_in_one_call_and_hits_are_not(tmp_path):
    cache = EmbeddingCache(directory=tmp_path)
    predictor = BatchingPredictor()
    planes = [image(seed) for seed in range(4)]
    cache.embedding(predictor, planes[1], image_id="s", slice_index=1, n_slices=4)
    found = cache.embeddings(predictor, planes, image_id="s", n_slices=4)
    assert [source for _, source in found] == ["computed", "memory", "computed", "computed"]
    assert predictor.batches == [3] and predictor.calls == 1  # the single miss went to embed
    for plane, (embedding, _) in zip(planes, found, strict=True):
        np.testing.assert_array_equal(embedding.features, fake_embedding(plane).features)
    fresh = EmbeddingCache(directory=tmp_path)  # a new session: every slot is on disk
    assert [s for _, s in fresh.embeddings(predictor, planes, image_id="s", n_slices=4)] == ["disk"] * 4


def test_a_slice_twice_in_one_call_is_encoded_once():
    cache = EmbeddingCache(directory=None)
    predictor = BatchingPredictor()
    found = cache.embeddings(
        predictor, [image(0), image(0), image(1)], image_id="s", slice_indices=[0, 0, 1], n_slices=2
    )
    assert [source for _, source in found] == ["computed", "memory", "computed"]
    assert predictor.batches == [2]


def test_a_slice_another_thread_encodes_is_waited_for():
    gate = threading.Event()
    cache = EmbeddingCache(directory=None)
    slow = BatchingPredictor(gate=gate)
    worker = threading.Thread(target=cache.embedding, args=(slow, image(0)))
    worker.start()
    assert slow.started.wait(10)
    other = BatchingPredictor()
    result = {}
    asking = threading.Thread(target=lambda: result.update(found=cache.embeddings(other, [image(0), image(1)])))
    asking.start()
    gate.set()
    worker.join(10)
    asking.join(10)
    assert [source for _, source in result["found"]] == ["memory", "computed"]
    assert other.calls == 1 and other.batches == []  # only image(1) was encoded by the second caller


def test_an_error_reaches_the_caller_and_frees_the_slices():
    class Failing(BatchingPredictor):
        def embed_many(self, images, contrast_limits=None, batch_size=None):
            raise RuntimeError("out of memory")

    cache = EmbeddingCache(directory=None)
    with pytest.raises(RuntimeError, match="out of memory"):
        cache.embeddings(Failing(), [image(0), image(1)])
    assert [s for _, s in cache.embeddings(BatchingPredictor(), [image(0), image(1)])] == ["computed", "computed"]


def test_precisions_never_share_a_key_or_a_slot(tmp_path):
    model = FakeModel()
    keys = {precision: slice_key(image(), model, None, precision) for precision in ("float32", "bfloat16", "float16")}
    assert len(set(keys.values())) == 3
    assert keys["float32"] == slice_key(image(), model)  # float32 keys are those of caches written before precisions
    cache = EmbeddingCache(directory=tmp_path)
    exact, reduced = BatchingPredictor("float32"), BatchingPredictor("bfloat16")
    slot = {"image_id": "s", "slice_index": 0, "n_slices": 1}
    assert cache.embedding(exact, image(), **slot)[1] == "computed"
    assert cache.embedding(reduced, image(), **slot)[1] == "computed"  # not float32's embedding
    fresh = EmbeddingCache(directory=tmp_path)
    assert fresh.embedding(exact, image(), **slot)[1] == "disk"  # each precision has its own store on disk
    assert fresh.embedding(reduced, image(), **slot)[1] == "disk"
    assert exact.calls == 1 and reduced.calls == 1


def test_real_predictor_batches_equal_single_embeds(predictor):
    cache = EmbeddingCache(directory=None)
    planes = [image(seed, shape) for seed, shape in enumerate([(40, 60), (64, 32)])]
    found = cache.embeddings(predictor, planes, batch_size=2)
    for plane, (embedding, _) in zip(planes, found, strict=True):
        np.testing.assert_allclose(embedding.features, predictor.embed(plane).features, rtol=0, atol=1e-5)
