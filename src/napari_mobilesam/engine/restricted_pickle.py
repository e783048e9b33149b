"""Reading the tensors out of a checkpoint that also pickles other Python objects, without running any of its code.

micro-sam's training checkpoints (torch_em's) pickle more than tensors: the
trainer's ``init`` data, optimizer and scheduler states, sometimes whole
objects. ``torch.load(weights_only=True)`` refuses such a file as a whole.
:func:`load_inert` reads it with an unpickler whose ``find_class`` imports
nothing and calls nothing: the few globals a tensor state dict needs
(tensor rebuilding, ``OrderedDict``, dtypes, ``torch.Size``) are the real
ones, every other global becomes an :class:`Inert` stand-in that remembers
the name it stands for and ignores whatever the pickle asks of it. So a
``__reduce__`` payload (``os.system``, ``builtins.exec``, ...) is never
called: it becomes an inert object, and the caller, which takes only plain
dicts of tensors from the result, names it if it sits where weights belong.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
import types
from collections import OrderedDict


class Inert:
    """Stands in for an object of a global that is not allowed; ``global_name`` says which."""

    global_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        pass

    # What a pickle may do with an object it built: none of it has any effect.
    def __call__(self, *args, **kwargs) -> Inert:
        return _stand_in(self.global_name)()

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, item) -> None:
        pass

    def extend(self, items) -> None:
        pass

    def add(self, item) -> None:
        pass

    def __repr__(self) -> str:
        return f"<not unpickled: {self.global_name}>"


def _stand_in(global_name: str) -> type:
    return type("Inert", (Inert,), {"global_name": global_name})


def _allowed() -> dict[str, object]:
    """The globals a tensor state dict is made of, as torch's own ``weights_only`` loader allows them."""
    import codecs

    import torch
    import torch._utils

    allowed: dict[str, object] = {
        "collections.OrderedDict": OrderedDict,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "_codecs.encode": codecs.encode,  # how pickle protocol 2 writes bytes
    }
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"):
        if hasattr(torch._utils, name):
            allowed[f"torch._utils.{name}"] = getattr(torch._utils, name)
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            allowed[f"torch.{name}"] = value
    return allowed


class InertUnpickler(pickle.Unpickler):
    """A pickle unpickler that never imports a module or calls anything but the allowed globals."""

    _allowed_globals: dict[str, object] | None = None

    def find_class(self, module: str, name: str):
        # Pickle protocols < 3 (torch.save's default is 2) write Python 2's names: read them as Python 3's.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = InertUnpickler._allowed_globals
        if allowed is None:
            allowed = InertUnpickler._allowed_globals = _allowed()
        found = allowed.get(f"{module}.{name}")
        return found if found is not None else _stand_in(f"{module}.{name}")


def _load(file, **kwargs):
    return InertUnpickler(file, **kwargs).load()


#: What ``torch.load(pickle_module=...)`` takes: the two names it uses.
INERT_PICKLE = types.ModuleType("napari_mobilesam_inert_pickle")
INERT_PICKLE.Unpickler = InertUnpickler
INERT_PICKLE.load = _load


def load_inert(path: str | os.PathLike):
    """The checkpoint at ``path`` as ``torch.load`` would read it, with every disallowed object :class:`Inert`."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=INERT_PICKLE)


def inert_names(value, limit: int = 3) -> list[str]:
    """The names of the :class:`Inert` objects in ``value`` (dicts, lists and tuples searched), at most ``limit``."""
    found: list[str] = []
    stack = [value]
    while stack and len(found) < limit:
        item = stack.pop()
        if isinstance(item, Inert) or (isinstance(item, type) and issubclass(item, Inert)):
            if item.global_name not in found:
                found.append(item.global_name)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found
