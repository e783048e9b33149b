"""The widget's status: always the same number of lines, computed from the state after every change.

Pure text from plain values, so a status can never go stale: the widget
recomputes it from the session, the image's state and the settings whenever
any of them changes, and the lines keep their places (the layout never jumps).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Lines of the status: model, image and plane, result or last action, hints.
STATUS_LINES = 4


def status_lines(
    model_text: str,
    state,
    default_positive: bool,
    work_text: str = "",
) -> list[str]:
    """The :data:`STATUS_LINES` lines for ``state`` (an ``ImageState``, or None without an image).

    ``model_text``: weights and device (or that the model is loading);
    ``work_text``: where the user's work is on a stack (see :func:`work_summary`).
    """
    lines = [model_text]
    if state is None:
        lines.append("No image: open one (File › Open, or File › Open Sample › napari-mobilesam).")
        lines.append("")
    else:
        # The image's name is in the picker just above: the line says where on it, and its embedding.
        where = state.plane.describe() if state.plane is not None else ""
        if state.plane_problem:
            lines.append(state.plane_problem)
        else:
            lines.append(f"{where}: {state.embedding_text}".strip(": "))
        lines.append(_result_line(state))
    negative = "negative" if default_positive else "positive"
    hint = f"click: {'positive' if default_positive else 'negative'} · right/Alt+click: {negative}"
    lines.append(f"{hint} · {work_text}" if work_text else hint)
    return lines


def _result_line(state) -> str:
    editing = f"editing label {state.editing}: " if state.editing is not None else ""
    if state.accept_waiting:
        what = "the embedding" if not state.embedding_ready else "the mask"
        return f"{editing}accept waits for {what}…"
    if state.result is not None:
        decoded = state.result[1]
        if len(decoded.chosen) == 1:
            chosen, count = int(decoded.chosen[0]), decoded.iou.shape[1]
            return f"{editing}mask {chosen + 1}/{count}, predicted IoU {decoded.iou[0, chosen]:.2f}"
        return f"{editing}{len(decoded.chosen)} objects"
    if state.editing is not None:
        return f"{editing}click inside or outside it to refine, Enter to replace it"
    return state.message


def work_summary(label_slices: Sequence[str], prompt_slices: Sequence[str], limit: int = 6) -> str:
    """E.g. ``"labels on z=1, 3 · prompts on z=7"`` (empty for a 2D image or no work)."""
    parts = []
    for what, places in (("labels", label_slices), ("prompts", prompt_slices)):
        if places:
            shown = ", ".join(places[:limit]) + (f" (+{len(places) - limit})" if len(places) > limit else "")
            parts.append(f"{what} on {shown}")
    return " · ".join(parts)
