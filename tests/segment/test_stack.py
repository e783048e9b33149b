"""segment_stack: z-linking proven with the ground-truth oracle, and its contract with recipe weights.

The oracle is the one of ``test_everything.py``: a stand-in decoder whose
logits come from the ground-truth labels of each slice of StarDist's 3D nuclei
(``decoder_for=lambda z: OracleDecoder(truth[z])``), so every step of the real
pipeline runs -- prompts, filters, NMS, label image, ids, linking -- without
weights and without encoding. The recipe weights then check the structure of
what the model path returns: shapes, dtypes, ids, the embedding cache,
cancellation, colour and non-square stacks.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import tifffile
import torch

from napari_mobilesam import MobileSAMError
from napari_mobilesam.cache.embedding_cache import EmbeddingCache
from napari_mobilesam.segment.linking import link_stack
from napari_mobilesam.segment.stack import iter_segment_stack, segment_stack
from recipe import DATA
from support.oracle import OracleDecoder

# Recipe weights: few prompts and no quality filters, so that the random model's masks survive.
RECIPE = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def nuclei3d():
    """``(31, 61, 57)`` uint16 nuclei and their ground-truth labels (51 nuclei, each on 3-11 slices)."""
    return tifffile.imread(DATA / "nuclei3d.tif"), tifffile.imread(DATA / "nuclei3d_labels.tif")


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine two threads wait on each other (the oracle 4x, the encoder 2x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def oracle_for(truth: np.ndarray):
    """``decoder_for``: a fresh oracle per slice, seeded by the slice, so any order gives the same logits."""
    planes = truth.reshape(-1, *truth.shape[-2:])
    return lambda slice_index: OracleDecoder(planes[slice_index], seed=slice_index)


def assert_stack_labels(labels: np.ndarray, shape: tuple[int, ...]) -> None:
    assert labels.shape == shape and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, ids.size))  # 1..N, no gaps


# -- the oracle: objects spanning z-slices keep one id ----------------------------------


def object_ids(truth: np.ndarray, labels: np.ndarray, core: float = 0.5) -> dict[int, int]:
    """Ground-truth object -> the one predicted id it carries through z, or 0 if it is split (or missed).

    On each slice, an object's id is the predicted id covering at least half
    of its pixels there (0 if none does). The object carries one id when that
    is one and the same non-zero id on all its *core* slices: those where its
    cross-section is at least ``core`` of its largest. The caps are left out:
    near its poles a nucleus' cross-section shrinks fast from slice to slice
    (a nucleus here spans 3 to 11 slices), so its last slices overlap their
    neighbours little, while the cap of a nucleus resting on another one
    overlaps that one's cap as much; no overlap rule links caps without
    merging stacked nuclei. Linking the perfect 2D ground truth at IoU 0.5
    gives one id to the cores of all nuclei, but to only 25% of the nuclei
    with their caps included.
    """
    result = {}
    for index in np.unique(truth)[1:]:
        inside = truth == index
        areas = inside.sum(axis=(1, 2))
        core_slices = np.flatnonzero((areas > 0) & (areas >= core * areas.max()))
        found = set()
        for z in core_slices:
            ids, counts = np.unique(labels[z][inside[z]], return_counts=True)
            best = int(ids[np.argmax(counts)])
            found.add(best if best > 0 and counts.max() >= 0.5 * areas[z] else 0)
        result[int(index)] = found.pop() if len(found) == 1 else 0
    return result


def linking_scores(truth: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(fraction of objects carrying one id, fraction carrying one id that no other object carries)."""
    ids = object_ids(truth, labels)
    shared = Counter(i for i in ids.values() if i)
    one_id = [i for i in ids.values() if i]
    alone = [i for i in one_id if shared[i] == 1]
    return len(one_id) / len(ids), len(alone) / len(ids)


def per_slice(labels: np.ndarray) -> np.ndarray:
    """Slices' labels with ids made unique per slice (numbered by slice, as segment_stack numbers them)."""
    labels = np.asarray(labels, dtype=np.int64)
    offsets = np.arange(labels.shape[0], dtype=np.int64)[:, None, None] * (int(labels.max()) + 1)
    return np.where(labels > 0, labels + offsets, 0)


# A 10 x 10 grid (a point every ~6 pixels) reaches the core of every nucleus with a tenth of the default's prompts.
@pytest.mark.parametrize(("sampler", "params"), [("boxes", {}), ("grid", {"points_per_side": 10})])
def test_oracle_links_nuclei_through_z(nuclei3d, one_thread, sampler, params):
    image, truth = nuclei3d
    labels = segment_stack(image, decoder_for=oracle_for(truth), sampler=sampler, **params)
    assert_stack_labels(labels, image.shape)
    one_id, alone = linking_scores(truth, labels)
    assert one_id >= 0.9
    # Not by merging: nuclei share ids about as rarely as when the perfect 2D ground truth is linked
    # (0.88 carry an id of their own then: 6 of the 51 nuclei rest on another one, end to start, and
    # are merged with it). Linking everything that touches (IoU > 0) would leave about half alone.
    _, truth_alone = linking_scores(truth, link_stack(per_slice(truth)))
    assert alone >= truth_alone - 0.1


@pytest.fixture(scope="module")
def oracle_substack(nuclei3d):
    """Slices 12-15: the oracle's labels with linking, and the inputs that made them."""
    image, truth = nuclei3d[0][12:16], nuclei3d[1][12:16]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        labels = segment_stack(image, decoder_for=oracle_for(truth), sampler="boxes")
    finally:
        torch.set_num_threads(threads)
    return image, truth, labels


def test_ids_do_not_depend_on_slice_order(oracle_substack, one_thread):
    image, truth, expected = oracle_substack
    shuffled = segment_stack(image, decoder_for=oracle_for(truth), sampler="boxes", slices=[2, 0, 3, 1])
    np.testing.assert_array_equal(shuffled, expected)
    # Slices computed one by one in any order (as distributed workers do), then linked: the same ids.
    each = np.zeros(expected.shape, np.int64)
    for result in iter_segment_stack(image, decoder_for=oracle_for(truth), sampler="boxes", slices=[3, 1, 2, 0]):
        assert result.embedding_source == "none" and result.n_slices == 4
        assert result.labels.max() == len(np.unique(result.labels)) - 1  # each slice's objects are 1..n
        each[result.index] = result.labels
    np.testing.assert_array_equal(link_stack(per_slice(each)), expected)


def test_linking_only_renames(oracle_substack, one_thread):
    """Per slice, linked and unlinked labels are the same masks; unlinked ids rise from slice to slice."""
    image, truth, linked = oracle_substack
    unlinked = segment_stack(image, decoder_for=oracle_for(truth), sampler="boxes", link_3d=False)
    assert_stack_labels(unlinked, image.shape)
    for z in range(image.shape[0]):
        pairs = np.unique(np.stack([linked[z].ravel(), unlinked[z].ravel()]), axis=1)
        assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]  # a one-to-one renaming
        assert np.array_equal(pairs[0] == 0, pairs[1] == 0)
    highest = [unlinked[z].max() for z in range(4)]
    lowest = [unlinked[z][unlinked[z] > 0].min() for z in range(4)]
    assert all(lowest[z + 1] > highest[z] for z in range(3))  # every slice's ids of its own
    assert unlinked.max() > linked.max()
    # Unlinked ids keep the order of the per-slice ids, so linking them afterwards gives the same labels.
    np.testing.assert_array_equal(link_stack(unlinked), linked)


def test_selected_slices_only(oracle_substack, one_thread):
    image, truth, _ = oracle_substack
    made = []

    def decoder_for(slice_index):
        made.append(slice_index)
        return oracle_for(truth)(slice_index)

    labels = segment_stack(image, decoder_for=decoder_for, sampler="boxes", slices=[0, 2])
    assert made == [0, 2]
    assert labels[1].max() == 0 and labels[3].max() == 0 and labels[0].max() > 0 and labels[2].max() > 0
    # Slice 1 is not done, so nothing links across it.
    assert not set(np.unique(labels[0])[1:]) & set(np.unique(labels[2])[1:])


def test_4d_links_along_z_only(oracle_substack, one_thread):
    image, truth, _ = oracle_substack
    image_tz, truth_tz = image.reshape(2, 2, *image.shape[1:]), truth.reshape(2, 2, *truth.shape[1:])
    labels = segment_stack(image_tz, decoder_for=oracle_for(truth_tz), sampler="boxes")
    assert_stack_labels(labels, image_tz.shape)
    per_time = [set(np.unique(labels[t])[1:]) for t in range(2)]
    assert not per_time[0] & per_time[1]  # time points never share an id
    for t in range(2):
        assert set(np.unique(labels[t, 0])[1:]) & set(np.unique(labels[t, 1])[1:])  # but z-slices do


def test_decoder_mode_loads_no_model_and_leaves_the_cache_alone(oracle_substack, monkeypatch):
    image, truth, _ = oracle_substack

    def no_model(*args, **kwargs):
        raise AssertionError("no model should be loaded")

    monkeypatch.setattr("napari_mobilesam.engine.weights.load_model", no_model)
    cache = EmbeddingCache(directory=None)
    segment_stack(image[:1], decoder_for=oracle_for(truth), cache=cache, sampler="boxes")
    assert cache.stats == {"memory_hits": 0, "disk_hits": 0, "misses": 0} and len(cache) == 0


def test_lazy_stack_is_read_slice_by_slice(oracle_substack, one_thread):
    da = pytest.importorskip("dask.array")
    image, truth, expected = oracle_substack
    reads = []

    def read(block, block_info=None):
        reads.append(block_info[0]["chunk-location"][0])
        return block

    lazy = da.from_array(image, chunks=(1, *image.shape[1:])).map_blocks(read, meta=np.array((), image.dtype))
    results = iter_segment_stack(lazy, decoder_for=oracle_for(truth), sampler="boxes")
    first = next(results)
    assert first.slice_index == 0 and reads == [0]
    results.close()
    np.testing.assert_array_equal(segment_stack(lazy, decoder_for=oracle_for(truth), sampler="boxes"), expected)
    assert sorted(reads) == [0, 0, 1, 2, 3]


def test_progress_false_cancels_and_keeps_finished_slices(oracle_substack, one_thread):
    image, truth, expected = oracle_substack
    calls, made = [], []

    def progress(done, total):
        calls.append((done, total))
        return done < 2

    def decoder_for(slice_index):
        made.append(slice_index)
        return oracle_for(truth)(slice_index)

    with pytest.warns(UserWarning, match="cancelled after 2 of 4 slices"):
        labels = segment_stack(image, decoder_for=decoder_for, sampler="boxes", progress=progress)
    assert calls == [(1, 4), (2, 4)] and made == [0, 1]  # nothing done after the cancel
    assert labels[2:].max() == 0 and labels[:2].max() > 0
    # The finished slices are linked and numbered as in a full run, up to the ids of the slices not done.
    full = expected[:2]
    pairs = np.unique(np.stack([labels[:2].ravel(), full.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(full)) == len(np.unique(labels[:2]))  # a one-to-one renaming
    assert np.array_equal(labels[:2] > 0, full > 0)


def test_progress_reports_every_slice_without_warning(oracle_substack, one_thread, recwarn):
    image, truth, expected = oracle_substack
    calls = []
    labels = segment_stack(
        image, decoder_for=oracle_for(truth), sampler="boxes", progress=lambda *step: calls.append(step)
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)] and not recwarn.list
    np.testing.assert_array_equal(labels, expected)


# -- errors -----------------------------------------------------------------------------


def test_bad_arguments_are_clear_errors(oracle_substack):
    image, truth, _ = oracle_substack
    with pytest.raises(MobileSAMError, match="Slice 4 does not exist"):
        segment_stack(image, decoder_for=oracle_for(truth), slices=[4])
    with pytest.raises(MobileSAMError, match="Slice -1 does not exist"):
        list(iter_segment_stack(image, decoder_for=oracle_for(truth), slices=[-1]))
    with pytest.raises(MobileSAMError, match="link_iou"):
        segment_stack(image, decoder_for=oracle_for(truth), link_iou=1.5)
    with pytest.raises(MobileSAMError, match="decoder_for"):
        segment_stack(image, decoder_for="oracle")
    with pytest.raises(MobileSAMError, match="Expected a"):
        segment_stack(np.zeros(5), decoder_for=oracle_for(truth))


# -- recipe weights: the model path ------------------------------------------------------


@pytest.fixture
def encoder_calls(recipe_model, monkeypatch):
    """Calls of the image encoder from now on (the one slow step the cache saves)."""
    calls = []
    forward = recipe_model.image_encoder.forward

    def counting_forward(*args, **kwargs):
        calls.append(args[0].shape)
        return forward(*args, **kwargs)

    monkeypatch.setattr(recipe_model.image_encoder, "forward", counting_forward)
    return calls


@pytest.fixture(scope="module")
def grey_stack(nuclei3d):
    """Three slices, 61 x 57 (taller than wide)."""
    return np.ascontiguousarray(nuclei3d[0][12:15])


@pytest.fixture(scope="module")
def stack_cache(tmp_path_factory):
    """One disk cache for the module: the grey stack is encoded once."""
    return EmbeddingCache(directory=tmp_path_factory.mktemp("embeddings"))


def test_recipe_stack_structure_and_cache_reuse(recipe_model, grey_stack, stack_cache, encoder_calls, one_thread):
    steps = []
    first = segment_stack(
        grey_stack,
        recipe_model,
        cache=stack_cache,
        image_id="grey",
        progress=lambda *step: steps.append(step),
        **RECIPE,
    )
    assert len(encoder_calls) == 3 and steps == [(1, 3), (2, 3), (3, 3)]
    assert_stack_labels(first, grey_stack.shape)
    assert all(first[z].max() > 0 for z in range(3))

    # Warm: from memory, nothing encoded, the same labels.
    again = segment_stack(grey_stack, recipe_model, cache=stack_cache, image_id="grey", **RECIPE)
    assert len(encoder_calls) == 3
    np.testing.assert_array_equal(again, first)

    # A new session (a new cache on the same folder): from disk, nothing encoded.
    fresh = EmbeddingCache(directory=stack_cache.directory)
    results = list(iter_segment_stack(grey_stack, recipe_model, cache=fresh, image_id="grey", **RECIPE))
    assert [r.embedding_source for r in results] == ["disk"] * 3 and len(encoder_calls) == 3
    assert [(r.index, r.slice_index, r.n_slices) for r in results] == [((z,), z, 3) for z in range(3)]
    each = np.stack([r.labels for r in results])
    assert each.dtype == np.int32
    np.testing.assert_array_equal(link_stack(per_slice(each)), first)

    # Unlinked: the same masks, every slice with ids of its own.
    plain = link_stack(per_slice(each), link_3d=False)
    assert_stack_labels(plain, grey_stack.shape)
    ids = [set(np.unique(plain[z])[1:]) for z in range(3)]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert np.array_equal(plain > 0, first > 0) and plain.max() >= first.max()


def test_recipe_cancel_stops_encoding(recipe_model, grey_stack, encoder_calls, one_thread):
    cache = EmbeddingCache(directory=None)
    with pytest.warns(UserWarning, match="cancelled after 1 of 3"):
        labels = segment_stack(grey_stack, recipe_model, cache=cache, progress=lambda done, total: False, **RECIPE)
    assert len(encoder_calls) == 1  # the later slices were never encoded
    assert labels[0].max() > 0 and labels[1:].max() == 0
    assert_stack_labels(labels, grey_stack.shape)


def test_recipe_rgb_landscape_stack(recipe_model, encoder_calls, one_thread):
    """Colour (z, y, x, 3), wider than tall (the grey stack above is taller than wide)."""
    with np.load(DATA / "histo.npz") as ref:
        rgb = np.stack([ref["image"][:24, :72], ref["image"][8:32, 16:88]])
    assert rgb.shape == (2, 24, 72, 3) and rgb.dtype == np.uint8
    cache = EmbeddingCache(directory=None)
    labels = segment_stack(rgb, recipe_model, cache=cache, **RECIPE)
    assert_stack_labels(labels, (2, 24, 72))
    assert labels[0].max() >= 1 and labels[1].max() >= 1
    assert [call[-2:] for call in encoder_calls] == [(1024, 1024)] * 2  # padded to the model's square input
    assert cache.stats["misses"] == 2


def test_a_huge_lazy_stack_is_refused_before_a_slice_is_read():
    from support.lazy import Unreadable

    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        segment_stack(Unreadable((3, 20000, 20000)), model=object())
    with pytest.raises(MobileSAMError, match="20000 x 20000 pixels"):
        next(iter_segment_stack(Unreadable((3, 20000, 20000, 3), np.uint8), model=object()))
