import gc

from napari_mobilesam.engine.gc_freeze import host_objects_frozen


def test_the_objects_made_before_are_left_out_of_collections_inside_only():
    assert gc.get_freeze_count() == 0
    with host_objects_frozen():
        assert gc.get_freeze_count() > 1000  # every object of the test process
    assert gc.get_freeze_count() == 0


def test_nested_uses_share_one_freeze_undone_by_the_last_to_leave():
    with host_objects_frozen():
        frozen = gc.get_freeze_count()
        with host_objects_frozen():
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() >= frozen  # the outer body still runs with it
    assert gc.get_freeze_count() == 0


def test_an_error_inside_gives_the_objects_back():
    try:
        with host_objects_frozen():
            raise RuntimeError("load failed")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0


def test_cyclic_garbage_of_frozen_objects_is_collected_after_the_load():
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    import weakref

    gone = weakref.ref(a)
    with host_objects_frozen():
        del a, b
        gc.collect()
        assert gone() is not None  # frozen: not collected during the load
    gc.collect()
    assert gone() is None
