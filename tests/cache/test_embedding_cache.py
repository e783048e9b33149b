"""EmbeddingCache: memory LRU, zarr disk store, invalidation, damage, threads."""

from __future__ import annotations

import json
import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_mobilesam.cache.embedding_cache import EmbeddingCache
from napari_mobilesam.cache.keys import model_checksum
from napari_mobilesam.cache.store import store_name
from napari_mobilesam.engine.embedding import EMBEDDING_SHAPE, ImageEmbedding
from napari_mobilesam.engine.preprocessing import preprocess_shape
from napari_mobilesam.errors import MobileSAMError
from support.fake_encoder import FakeModel, FakePredictor, fake_embedding, image

SLOT = {"image_id": "s", "slice_index": 1, "n_slices": 2}  # slice 1 of a two-slice stack "s"
EMBEDDING_BYTES = int(np.prod(EMBEDDING_SHAPE)) * 4


def assert_same(a: ImageEmbedding, b: ImageEmbedding) -> None:
    np.testing.assert_array_equal(a.features, b.features)
    assert a.original_size == b.original_size
    assert a.input_size == b.input_size


def store(directory: Path, image_id: str) -> Path:
    path = directory / store_name(image_id)
    assert path.is_dir()
    return path


def chunk_file(directory: Path, image_id: str, slice_index: int) -> Path:
    (chunk,) = [p for p in (store(directory, image_id) / "features" / "c" / str(slice_index)).rglob("*") if p.is_file()]
    return chunk


# -- memory ----------------------------------------------------------------------


def test_second_call_is_a_memory_hit():
    cache, predictor = EmbeddingCache(directory=None), FakePredictor()
    first, source = cache.embedding(predictor, image())
    assert source == "computed"
    second, source = cache.embedding(predictor, image())
    assert source == "memory" and second is first
    assert predictor.calls == 1
    assert cache.stats == {"memory_hits": 1, "disk_hits": 0, "misses": 1}
    assert_same(first, fake_embedding(image()))


def test_lru_evicts_least_recently_used_by_bytes():
    cache, predictor = EmbeddingCache(memory_bytes=int(2.5 * EMBEDDING_BYTES), directory=False), FakePredictor()
    a, b, c = image(1), image(2), image(3)
    cache.embedding(predictor, a)
    cache.embedding(predictor, b)
    assert cache.embedding(predictor, a)[1] == "memory"  # a is now more recent than b
    cache.embedding(predictor, c)  # evicts b
    assert len(cache) == 2 and cache.memory_bytes_used == 2 * EMBEDDING_BYTES
    assert cache.embedding(predictor, a)[1] == "memory"
    assert cache.embedding(predictor, b)[1] == "computed"
    assert predictor.calls == 4

    cache.memory_bytes = EMBEDDING_BYTES  # lowering the budget evicts at once
    assert len(cache) == 1 and cache.memory_bytes_used == EMBEDDING_BYTES
    cache.memory_bytes = 0
    cache.embedding(predictor, a)
    assert len(cache) == 0 and cache.memory_bytes_used == 0


# -- keys ------------------------------------------------------------------------


def test_slice_key_depends_on_content_shape_dtype_contrast_and_weights():
    cache, model = EmbeddingCache(directory=None), FakeModel()
    base = image()
    key = cache.slice_key(base, model)
    assert key == cache.slice_key(base.copy(), model)
    assert key == cache.slice_key(np.asfortranarray(base), model)
    edited = base.copy()
    edited[3, 4] += 1
    others = {
        cache.slice_key(edited, model),
        cache.slice_key(base.reshape(60, 40), model),
        cache.slice_key(base.view(np.int16), model),
        cache.slice_key(base, model, contrast_limits=(0, 1000)),
        cache.slice_key(base, model, contrast_limits=(0, 1001)),
        cache.slice_key(base, FakeModel("b" * 64)),
    }
    assert key not in others and len(others) == 6
    # contrast limits are compared after rounding to 9 significant digits
    assert cache.slice_key(base, model, (0.1 + 0.2, 1000)) == cache.slice_key(base, model, (0.3, 1000.0))


def test_model_without_sha256_is_hashed_once(recipe_model):
    checksum = model_checksum(recipe_model)
    assert checksum.startswith("blake2b:")
    assert recipe_model._napari_mobilesam_checksum == checksum
    assert model_checksum(recipe_model) == checksum
    assert model_checksum(FakeModel()) == "sha256:" + "a" * 64


# -- disk ------------------------------------------------------------------------


@pytest.mark.parametrize("image_id", [None, "stack.tif"])
def test_fresh_cache_reads_from_disk(tmp_path, image_id):
    predictor = FakePredictor()
    slot = {"image_id": image_id, "slice_index": 0 if image_id is None else 3, "n_slices": 5}
    first, _ = EmbeddingCache(directory=tmp_path).embedding(predictor, image(), **slot)
    cache = EmbeddingCache(directory=tmp_path)
    again, source = cache.embedding(predictor, image(), **slot)
    assert source == "disk" and predictor.calls == 1
    assert cache.stats == {"memory_hits": 0, "disk_hits": 1, "misses": 0}
    assert_same(again, first)
    assert cache.embedding(predictor, image(), **slot)[1] == "memory"


def test_stack_slices_share_one_store(tmp_path):
    predictor = FakePredictor()
    cache = EmbeddingCache(directory=tmp_path)
    for z in range(3):
        cache.embedding(predictor, image(z), image_id="movie", slice_index=z, n_slices=3)
    assert [p.name for p in tmp_path.iterdir()] == [store_name("movie")]
    fresh = EmbeddingCache(directory=tmp_path)
    for z in range(3):
        embedding, source = fresh.embedding(predictor, image(z), image_id="movie", slice_index=z, n_slices=3)
        assert source == "disk"
        assert_same(embedding, fake_embedding(image(z)))
    assert predictor.calls == 3


@pytest.mark.parametrize(
    "change",
    ["contrast", "weights", "content"],
)
def test_other_contrast_weights_or_content_miss_on_disk(tmp_path, change):
    EmbeddingCache(directory=tmp_path).embedding(FakePredictor(), image(), contrast_limits=(10, 4000), **SLOT)
    predictor = FakePredictor(sha256="b" * 64 if change == "weights" else "a" * 64)
    pixels = image(seed=9) if change == "content" else image()
    limits = (10.0, 3000.0) if change == "contrast" else (10.0, 4000.0)
    cache = EmbeddingCache(directory=tmp_path)
    embedding, source = cache.embedding(predictor, pixels, contrast_limits=limits, **SLOT)
    assert source == "computed" and predictor.calls == 1
    assert_same(embedding, fake_embedding(pixels, limits))
    # the slot now holds the new embedding
    fresh = EmbeddingCache(directory=tmp_path)
    assert fresh.embedding(predictor, pixels, contrast_limits=limits, **SLOT)[1] == "disk"


@pytest.mark.parametrize("damage", ["overwrite", "truncate"])
def test_corrupt_chunk_is_detected_and_rewritten(tmp_path, damage):
    EmbeddingCache(directory=tmp_path).embedding(FakePredictor(), image(), **SLOT)
    chunk = chunk_file(tmp_path, "s", 1)
    data = chunk.read_bytes()
    assert len(data) == EMBEDDING_BYTES
    if damage == "overwrite":  # same length, other values: only the checksum can tell
        chunk.write_bytes(np.full(EMBEDDING_SHAPE, 7.0, dtype="<f4").tobytes())
    else:
        chunk.write_bytes(data[: len(data) // 2])

    predictor = FakePredictor()
    cache = EmbeddingCache(directory=tmp_path)
    embedding, source = cache.embedding(predictor, image(), **SLOT)
    assert source == "computed" and predictor.calls == 1
    assert_same(embedding, fake_embedding(image()))
    assert chunk.read_bytes() == data  # rewritten
    assert EmbeddingCache(directory=tmp_path).embedding(predictor, image(), **SLOT)[1] == "disk"


def _drop_record(path: Path) -> None:
    (path / "records" / "1.json").unlink()


def _drop_chunk(path: Path) -> None:
    for file in (path / "features" / "c" / "1").rglob("*"):
        if file.is_file():
            file.unlink()


def _garble(relative: str):
    def garble(path: Path) -> None:
        (path / relative).write_bytes(b"\x00{not json")

    return garble


def _other_slice_count(path: Path) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["napari_mobilesam"]["n_slices"] = 7
    (path / "zarr.json").write_text(json.dumps(meta))


def _drop_store_metadata(path: Path) -> None:
    (path / "zarr.json").unlink()


@pytest.mark.parametrize(
    "damage",
    [
        _drop_record,
        _drop_chunk,
        _garble("zarr.json"),
        _garble("features/zarr.json"),
        _garble("records/1.json"),
        _other_slice_count,
        _drop_store_metadata,
    ],
    ids=["record-missing", "chunk-missing", "group-garbage", "array-garbage", "record-garbage", "shape", "no-meta"],
)
def test_half_written_or_damaged_store_is_rebuilt(tmp_path, damage):
    EmbeddingCache(directory=tmp_path).embedding(FakePredictor(), image(), **SLOT)
    damage(store(tmp_path, "s"))

    predictor = FakePredictor()
    embedding, source = EmbeddingCache(directory=tmp_path).embedding(predictor, image(), **SLOT)
    assert source == "computed" and predictor.calls == 1
    assert_same(embedding, fake_embedding(image()))
    again, source = EmbeddingCache(directory=tmp_path).embedding(predictor, image(), **SLOT)
    assert source == "disk"
    assert_same(again, embedding)


def test_other_stack_length_rebuilds_the_store(tmp_path):
    predictor = FakePredictor()
    EmbeddingCache(directory=tmp_path).embedding(predictor, image(), image_id="s", slice_index=0, n_slices=2)
    cache = EmbeddingCache(directory=tmp_path)
    assert cache.embedding(predictor, image(1), image_id="s", slice_index=3, n_slices=4)[1] == "computed"
    fresh = EmbeddingCache(directory=tmp_path)
    assert fresh.get(cache.slice_key(image(), predictor.model), image_id="s", slice_index=0) is None
    assert fresh.embedding(predictor, image(1), image_id="s", slice_index=3, n_slices=4)[1] == "disk"


def test_store_names_are_safe(tmp_path):
    cache = EmbeddingCache(memory_bytes=0, directory=tmp_path)
    for image_id in ["../../escape", "/abs/path.tif", "C:\\x\\y", "", "ümlaut name"]:
        cache.embedding(FakePredictor(), image(), image_id=image_id)
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 5 and all(n.endswith(".zarr") and "/" not in n and "\\" not in n for n in names)
    assert store_name("a") != store_name("A") and store_name("x/y").startswith("x_y-")


@pytest.mark.parametrize("where", ["file", "file/embeddings"])
def test_a_file_in_the_way_turns_the_disk_cache_off_with_one_warning(tmp_path, caplog, where):
    """NAPARI_MOBILESAM_CACHE (or directory=) naming a file: one warning, and the cache says it is off."""
    (tmp_path / "file").write_text("not a folder")
    cache, predictor = EmbeddingCache(directory=tmp_path / where), FakePredictor()
    for index in range(4):
        assert cache.embedding(predictor, image(index), image_id="s", slice_index=index, n_slices=4)[1] == "computed"
    assert cache.embedding(predictor, image())[1] == "memory"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "is a file, not a folder; the disk cache is off" in warnings[0].getMessage()
    assert cache.directory is None and cache.disk_problem == f"{tmp_path / 'file'} is a file, not a folder"
    assert cache.describe().endswith(f"disk cache off ({tmp_path / 'file'} is a file, not a folder)")
    assert cache.disk_bytes_used() == 0 and (tmp_path / "file").read_text() == "not a folder"


def test_disk_write_failure_keeps_working_in_memory(tmp_path, caplog, monkeypatch):
    from napari_mobilesam.cache import disk_slots

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(disk_slots, "write_slice", full_disk)
    cache, predictor = EmbeddingCache(directory=tmp_path), FakePredictor()
    for index in range(3):
        assert cache.embedding(predictor, image(index))[1] == "computed"
    assert cache.embedding(predictor, image())[1] == "memory"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "cannot write" in warnings[0].getMessage()  # once, not once per slice


def test_no_pickle_on_disk_or_when_reading(tmp_path, monkeypatch):
    first, _ = EmbeddingCache(directory=tmp_path).embedding(FakePredictor(), image(), image_id="s", n_slices=1)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    chunks = [p for p in files if "c" in p.relative_to(store(tmp_path, "s")).parts[:2]]
    assert len(chunks) == 1 and chunks[0].read_bytes() == first.features.astype("<f4").tobytes()
    for other in set(files) - set(chunks):
        json.loads(other.read_text(encoding="utf-8"))  # metadata and records are plain JSON

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(np, "load", refuse)
    again, source = EmbeddingCache(directory=tmp_path).embedding(FakePredictor(), image(), image_id="s")
    assert source == "disk"
    assert_same(again, first)


# -- API -------------------------------------------------------------------------


def test_get_put_contains(tmp_path):
    cache, model = EmbeddingCache(directory=tmp_path), FakeModel()
    key = cache.slice_key(image(), model)
    assert cache.get(key) is None and key not in cache
    cache.put(key, fake_embedding(image()), image_id="s", slice_index=2, n_slices=3)
    assert cache.get(key, image_id="s", slice_index=2) is not None
    fresh = EmbeddingCache(directory=tmp_path)
    assert fresh.contains(key, image_id="s", slice_index=2)
    assert not fresh.contains(key, image_id="s", slice_index=1)
    assert key not in fresh  # no image_id: another store
    assert_same(fresh.get(key, image_id="s", slice_index=2), fake_embedding(image()))
    assert fresh.stats["disk_hits"] == 1
    with pytest.raises(MobileSAMError, match="outside a stack"):
        cache.put(key, fake_embedding(image()), image_id="s", slice_index=3, n_slices=3)
    with pytest.raises(MobileSAMError, match="outside a stack"):
        cache.embedding(FakePredictor(), image(), image_id="s", slice_index=-1, n_slices=3)
    with pytest.raises(MobileSAMError, match="ImageEmbedding"):
        cache.put(key, np.zeros(EMBEDDING_SHAPE, np.float32))


def test_clear_and_sizes(tmp_path):
    cache, predictor = EmbeddingCache(directory=tmp_path), FakePredictor()
    for z in range(2):
        cache.embedding(predictor, image(z), image_id="s", slice_index=z, n_slices=2)
    cache.embedding(predictor, image(5))
    assert cache.memory_bytes_used == 3 * EMBEDDING_BYTES
    assert 3 * EMBEDDING_BYTES <= cache.disk_bytes_used() < 3 * EMBEDDING_BYTES + 100_000
    text = cache.describe()
    assert "3 embeddings in memory (12 MiB of 1.0 GiB)" in text
    assert f"12 MiB on disk at {tmp_path}" in text

    cache.clear(disk=False)
    assert cache.memory_bytes_used == 0 and cache.disk_bytes_used() > 0
    assert cache.embedding(predictor, image(5))[1] == "disk"
    (tmp_path / "unrelated.txt").write_text("kept")
    (tmp_path / "mine.zarr").mkdir()  # a user's own zarr folder beside the stores (the cache folder was shared)
    (tmp_path / "mine.zarr" / "data.txt").write_text("kept too")
    (tmp_path / ".tmp-notes").write_text("and this")
    cache.clear()
    assert cache.memory_bytes_used == 0 and len(cache) == 0
    assert cache.disk_bytes_used() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-notes", "mine.zarr", "unrelated.txt"]
    assert (tmp_path / "mine.zarr" / "data.txt").read_text() == "kept too"
    assert cache.embedding(predictor, image(5))[1] == "computed"


@pytest.mark.parametrize("directory", [None, False])
def test_disk_disabled(tmp_path, monkeypatch, directory):
    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(tmp_path))
    cache, predictor = EmbeddingCache(directory=directory), FakePredictor()
    assert cache.directory is None
    cache.embedding(predictor, image(), image_id="s", n_slices=1)
    assert cache.embedding(predictor, image(), image_id="s")[1] == "memory"
    assert list(tmp_path.iterdir()) == []
    assert cache.disk_bytes_used() == 0
    assert cache.describe().endswith("disk cache off")
    cache.clear()


def test_default_directory_is_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(tmp_path))
    cache = EmbeddingCache()
    assert cache.directory == tmp_path / "embeddings"
    cache.embedding(FakePredictor(), image())
    assert len(list((tmp_path / "embeddings").glob("*.zarr"))) == 1


# -- threads ---------------------------------------------------------------------


def test_two_threads_asking_for_one_slice_encode_it_once(tmp_path):
    gate = threading.Event()
    predictor = FakePredictor(gate=gate)
    cache = EmbeddingCache(directory=tmp_path)
    results: list = [None, None]

    def ask(i: int) -> None:
        results[i] = cache.embedding(predictor, image(), image_id="s", n_slices=1)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    threads[0].start()
    assert predictor.started.wait(10)  # the first thread is encoding...
    threads[1].start()
    time.sleep(0.2)  # ...while the second asks for the same slice
    gate.set()
    for thread in threads:
        thread.join(10)
    assert predictor.calls == 1
    assert sorted(source for _, source in results) == ["computed", "memory"]
    assert_same(results[0][0], results[1][0])
    assert_same(results[0][0], fake_embedding(image()))


def test_many_threads_many_slices(tmp_path):
    predictor = FakePredictor()
    cache = EmbeddingCache(memory_bytes=2 * EMBEDDING_BYTES, directory=tmp_path)
    errors: list = []

    def work(offset: int) -> None:
        try:
            for i in range(8):
                z = (i + offset) % 4
                embedding, _ = cache.embedding(predictor, image(z), image_id="s", slice_index=z, n_slices=4)
                assert_same(embedding, fake_embedding(image(z)))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert predictor.calls == 4  # never encoded twice: later misses come from disk
    fresh = EmbeddingCache(directory=tmp_path)
    assert all(
        fresh.embedding(predictor, image(z), image_id="s", slice_index=z, n_slices=4)[1] == "disk" for z in range(4)
    )


def test_an_encoding_error_reaches_every_waiter():
    class Failing(FakePredictor):
        def embed(self, image, contrast_limits=None):
            super().embed(image, contrast_limits)
            raise MobileSAMError("bad image")

    gate = threading.Event()
    predictor, cache = Failing(gate=gate), EmbeddingCache(directory=None)
    errors: list = []

    def ask() -> None:
        try:
            cache.embedding(predictor, image())
        except MobileSAMError as error:
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    threads[0].start()
    assert predictor.started.wait(10)
    threads[1].start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 2 and predictor.calls == 1
    assert len(cache) == 0
    with pytest.raises(MobileSAMError):  # not remembered: the next call tries again
        cache.embedding(predictor, image())
    assert predictor.calls == 2


# -- with the real model -----------------------------------------------------------


def test_real_predictor_round_trip(tmp_path, predictor):
    pixels = np.random.default_rng(0).random((48, 80), dtype=np.float32)
    limits = (0.1, 0.9)
    embedding, source = EmbeddingCache(directory=tmp_path).embedding(
        predictor, pixels, contrast_limits=limits, image_id="real", n_slices=1
    )
    assert source == "computed"
    assert embedding.original_size == (48, 80) and embedding.input_size == preprocess_shape(48, 80)

    class NoEncode:
        model = predictor.model

        def embed(self, *args, **kwargs):
            raise AssertionError("should come from disk")

    again, source = EmbeddingCache(directory=tmp_path).embedding(
        NoEncode(), pixels, contrast_limits=limits, image_id="real"
    )
    assert source == "disk"
    assert_same(again, embedding)
    predictor.set_embedding(again)
    masks, scores, _ = predictor.predict(point_coords=[[40, 24]], point_labels=[1])
    assert masks.shape == (3, 48, 80) and np.isfinite(scores).all()


def test_a_huge_lazy_slice_is_refused_before_it_is_read():
    from support.lazy import Unreadable

    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        EmbeddingCache(directory=None).embedding(FakePredictor(), Unreadable((20000, 20000)))
