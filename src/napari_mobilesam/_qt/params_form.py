"""A parameter form built with magicgui from a settings dataclass: the common fields shown, the rest folded.

Each field's widget comes from its type and default, and its range, step and
help from the field's metadata (``min``, ``max``, ``step``, ``help``,
``choices``: the same metadata the core validates with), so the form can
never offer a value the engine refuses. Fields named in ``advanced`` go under
an "Advanced" fold.
"""

from __future__ import annotations

import dataclasses

from magicgui.widgets import Container, create_widget
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QVBoxLayout, QWidget
from superqt import QCollapsible


class _Changed(QObject):
    changed = Signal(object)


class ParamsForm(QWidget):
    """A form for ``settings_type`` (a dataclass); :meth:`value` is an instance, :attr:`changed` fires on edits.

    ``labels``: field name -> label shown; ``choices``: field name -> ``[(label, value), ...]``;
    ``hidden``: fields not shown (kept from the last value set).
    """

    def __init__(
        self,
        settings_type,
        *,
        advanced=(),
        labels: dict[str, str] | None = None,
        choices: dict[str, list] | None = None,
        hidden=(),
        parent=None,
    ) -> None:
        super().__init__(parent)
        self._type = settings_type
        self._signals = _Changed()
        self.changed = self._signals.changed
        self._value = settings_type()
        labels = labels or {}
        choices = choices or {}
        self.widgets = {}
        main, folded = [], []
        for field in dataclasses.fields(settings_type):
            if field.name in hidden:
                continue
            widget = self._widget_for(field, labels.get(field.name), choices.get(field.name))
            widget.changed.connect(self._emit)
            self.widgets[field.name] = widget
            (folded if field.name in advanced else main).append(widget)
        self.main = Container(widgets=main, labels=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.main.native)
        self.advanced = None
        if folded:
            self.advanced_form = Container(widgets=folded, labels=True)
            self.advanced = QCollapsible("Advanced")
            self.advanced.addWidget(self.advanced_form.native)
            layout.addWidget(self.advanced)

    def _widget_for(self, field, label: str | None, choices):
        from ..segment.param_fields import setting_types

        meta = field.metadata
        help_text = meta.get("help", "")
        options = {"tooltip": help_text[:1].upper() + help_text[1:]}
        kind = setting_types(self._type)[field.name][0]
        if kind is bool:  # a check box: no range
            return create_widget(value=field.default, annotation=bool, name=field.name, label=label or _label(field.name), options=options)
        step = meta.get("step", 0.01 if kind is float else 1)
        options["step"] = step
        if "min" in meta:
            options["min"] = meta["min"] + (step if meta.get("min_open") else 0)  # an open end: one step inside
        if "max" in meta:
            options["max"] = meta["max"] - (step if meta.get("max_open") else 0)
        else:
            options["max"] = 10_000_000  # a spin box needs some maximum
        if choices is None and "choices" in meta:
            choices = [(str(choice), choice) for choice in meta["choices"]]
        if choices is not None:
            options = {"tooltip": options["tooltip"], "choices": choices}
            return create_widget(
                value=field.default, name=field.name, label=label or _label(field.name), widget_type="ComboBox",
                options=options,
            )
        return create_widget(
            value=field.default, annotation=kind, name=field.name, label=label or _label(field.name), options=options
        )

    def _emit(self, *_) -> None:
        self.changed.emit(self.value())

    def value(self):
        """The settings shown, as an instance of the dataclass (checked by it)."""
        shown = {name: widget.value for name, widget in self.widgets.items()}
        return dataclasses.replace(self._value, **shown)

    def set_value(self, settings) -> None:
        """Show ``settings`` (an instance of the dataclass)."""
        self._value = settings
        for name, widget in self.widgets.items():
            with widget.changed.blocked():
                widget.value = getattr(settings, name)
        self._emit()

    def set_choices(self, name: str, choices: list) -> None:
        """Offer other choices for field ``name`` (e.g. the samplers of the model in use)."""
        widget = self.widgets[name]
        value = widget.value
        with widget.changed.blocked():
            widget.choices = choices
            if value in [v for _, v in choices]:
                widget.value = value
        self._emit()


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()
