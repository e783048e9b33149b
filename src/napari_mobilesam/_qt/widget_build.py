"""The dock widget's parts, built in stages (see :mod:`.staged_build`): this module is imported in a background
thread while napari docks the empty widget, then each stage runs in its own event-loop turn."""

from __future__ import annotations

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout

from .accepting import Acceptor
from .decode_scheduler import PromptDecoder
from .encode_scheduler import PlaneEncoder
from .everything_section import EverythingSection
from .image_choice import ImageChoice
from .image_layers import ImageLayers
from .interaction import PromptLoop
from .lifecycle import Lifecycle
from .model_picker import ModelPicker
from .notify import reporting
from .plane_tracking import PlaneFollower
from .precision_section import PrecisionSection
from .prefetch import Prefetcher
from .sections import CacheSection, LayersSection, PromptSection, StatusLabel
from .stack_command import RUNS
from .status_view import StatusView
from .tools import Tools

# start: the first image is picked later (a script may call set_model() first); predict: at the end of the
# event-loop turn (merges the bursts of events one click emits); contrast: once the slider rests.
TIMERS = {"start": 0, "predict": 0, "view": 20, "contrast": 300, "prefetch": 500, "work": 200}


def sections(widget) -> None:
    """The layer pickers, the status, the prompt controls and the cache line, in the widget's layout."""
    widget.image_layers = ImageLayers(widget)
    widget.layers_section = LayersSection(widget._proxy, eligible_helper=widget.image_layers.pickable_helper)
    widget.prompt_section = PromptSection()
    widget.cache_section = CacheSection()
    widget.status_label = StatusLabel()
    widget._extra_sections = QVBoxLayout()
    layout = widget.layout()
    layout.removeWidget(widget._opening)
    widget._opening.hide()  # now: a deferred deletion waits for the event loop itself (not processEvents)
    widget._opening.deleteLater()
    for index, part in enumerate((widget.layers_section, widget.status_label, widget.prompt_section)):
        layout.insertWidget(index, part)
    layout.insertLayout(3, widget._extra_sections)
    layout.insertWidget(4, widget.cache_section)


def controllers(widget) -> None:
    """The controllers, the timers and the workers."""
    widget.tools = Tools(widget)
    widget.status_view = StatusView(widget)
    widget.choice = ImageChoice(widget)
    widget.lifecycle = Lifecycle(widget)
    widget.planes = PlaneFollower(widget)
    widget.prompts = PromptLoop(widget)
    widget.acceptor = Acceptor(widget)
    widget.timers = {name: QTimer(widget, singleShot=True, interval=ms) for name, ms in TIMERS.items()}
    for name, slot in (
        ("predict", widget.prompts.predict_now),
        ("view", widget.planes.update),
        ("contrast", widget.planes.update),
        ("prefetch", widget.planes.start_prefetch),
        ("work", widget.status_view.update_work),
        ("start", widget.choice.first_image),
    ):
        widget.timers[name].timeout.connect(reporting("following the viewer")(slot))
    widget.encoder = PlaneEncoder(
        widget.session, widget.planes.on_encoded, widget.planes.on_encode_error, widget.planes.on_encode_start
    )
    widget.decoder = PromptDecoder(
        widget.session, widget.prompts.is_current, widget.prompts.on_decoded, widget.prompts.on_decode_error
    )
    widget.prefetcher = Prefetcher(widget.session, widget.planes.user_is_busy, widget.planes.on_prefetched)


def model_row(widget) -> None:
    """The model picker (the Layers section's first row)."""
    widget.model_picker = ModelPicker(widget)
    widget.layers_section.form.insertRow(0, "Model", widget.model_picker)


def everything(widget) -> None:
    """ "Segment everything": every object on the slice shown, or on all slices."""
    widget.everything_section = EverythingSection(widget, instance_forms=False)
    widget.add_section(widget.everything_section)


def instance_forms(widget) -> None:
    """The Everything section's AIS and APG settings."""
    widget.everything_section.add_instance_forms()


def precision(widget) -> None:
    """The encoder's precision (the section adds itself)."""
    widget.precision_section = PrecisionSection(widget)


def start(widget) -> None:
    """Connect the parts, show the status, and start warming up (the first image is picked after it)."""
    RUNS.widgets[id(widget.viewer)] = widget
    _connect(widget)
    widget.update_cache_text()
    widget.render()
    widget.lifecycle.warm_up()  # starts the "start" timer when the prompt layers can be made


STAGES = (sections, controllers, model_row, everything, instance_forms, precision, start)


def _connect(widget) -> None:
    layers, prompts = widget.layers_section, widget.prompt_section
    choice = widget.choice
    layers.image.changed.connect(reporting("switching images")(choice.set_image))
    layers.points.changed.connect(reporting("picking the points layer")(choice.on_points_picked))
    layers.boxes.changed.connect(reporting("picking the boxes layer")(choice.on_boxes_picked))
    layers.labels.changed.connect(reporting("picking the labels layer")(choice.on_labels_picked))
    prompts.positive.toggled.connect(widget._on_polarity_toggled)
    prompts.next_mask.clicked.connect(widget.next_candidate)
    prompts.accept.clicked.connect(widget.accept)
    prompts.clear.clicked.connect(widget.clear_prompts)
    widget.cache_section.clear.clicked.connect(widget.clear_cache)
    widget._viewer_events = [
        (widget.viewer.dims.events.current_step, choice.on_view_event),
        (widget.viewer.dims.events.ndisplay, choice.on_ndisplay),
        (widget.viewer.dims.events.order, choice.on_view_event),
        (widget.viewer.layers.events.removed, widget.status_view.on_layers_changed),
        (widget.viewer.layers.events.inserted, widget.status_view.on_layers_changed),
    ]
    for emitter, callback in widget._viewer_events:
        emitter.connect(callback)
