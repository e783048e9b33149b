import threading
import time

import pytest
import torch
from torch import nn

from napari_mobilesam.engine import compute_thread
from napari_mobilesam.engine.interrupt import install


def test_work_from_any_thread_runs_on_one_thread_and_returns_its_result():
    seen = []

    def where(value):
        seen.append(threading.get_ident())
        return value * 2

    results = []
    callers = [threading.Thread(target=lambda v=v: results.append(compute_thread.call(where, v))) for v in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert sorted(results) == [0, 2, 4, 6]
    assert compute_thread.call(where, 5) == 10
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident()


def test_an_exception_reaches_the_caller():
    def fail():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        compute_thread.call(fail)
    assert compute_thread.call(lambda: "still serving") == "still serving"


def test_a_call_made_on_the_compute_thread_runs_at_once():
    def outer():
        return compute_thread.call(lambda: compute_thread.is_compute_thread())  # would wait for itself if queued

    assert compute_thread.call(outer) is True
    assert not compute_thread.is_compute_thread()


def test_urgent_work_runs_at_the_next_checkpoint_of_the_work_under_way():
    order, started = [], threading.Event()

    def long_job():
        started.set()
        time.sleep(0.3)  # the urgent call is queued meanwhile
        order.append("first half")
        compute_thread.checkpoint()
        order.append("second half")

    waiting = threading.Thread(target=lambda: compute_thread.call(long_job))
    waiting.start()
    started.wait(5)
    queued_normal = threading.Thread(target=lambda: compute_thread.call(order.append, "normal"))
    queued_normal.start()
    time.sleep(0.05)
    compute_thread.call(order.append, "urgent", urgent=True)
    waiting.join()
    queued_normal.join()
    assert order == ["first half", "urgent", "second half", "normal"]


def test_the_encoders_stages_are_checkpoints():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder = nn.Module()
            self.image_encoder.layers = nn.ModuleList([_Slow(), _Slow(), _Slow()])
            self.image_encoder.neck = nn.Identity()

    model = Model()
    install(model)
    order, started = [], threading.Event()

    def encode():
        started.set()
        x = torch.zeros(1)
        for layer in model.image_encoder.layers:
            x = layer(x)
            order.append("stage")
        return x

    encoding = threading.Thread(target=lambda: compute_thread.call(encode))
    encoding.start()
    started.wait(5)
    compute_thread.call(order.append, "decode", urgent=True)
    encoding.join()
    assert order.index("decode") < len(order) - 1  # served between stages, not after the encode


class _Slow(nn.Module):
    def forward(self, x):
        time.sleep(0.15)
        return x
