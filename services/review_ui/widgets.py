"""Streamlit pieces the pages share or that need more than a few lines (the pages stay flat
scripts): the refinement section and the review screen's clickable picture."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from regrasp.api.refinement import RoundRefinementPublic, StopAdvicePublic
from regrasp.api.review import ReviewItemPublic
from regrasp.grasp import drawing as viz
from regrasp.refine.label_quality import COVERAGE_FULL
from services.review_ui import overview
from services.review_ui.session import Picture

if TYPE_CHECKING:
    import plotly.graph_objects as go


#: The colour legend every page that draws labels follows (the pictures use viz's colours):
#: red is only ever the model's predictions; the theme's primary colour is a neutral blue.
LEGEND = (
    ":green[■] labels · :red[■] predictions (1 = best) · :orange[■] marked wrong · "
    ":blue[■] drawn by you (new labels) · yellow tag: accepted"
)


def wrong_badges(numbers: Sequence[int], *, empty: str) -> str:
    """Markdown for the label numbers marked wrong: orange badges, as on the picture."""
    if not numbers:
        return f":gray[{empty}]"
    return " ".join(f":orange-badge[{n}]" for n in numbers)


def refinement_section(rounds: Sequence[RoundRefinementPublic], stop: StopAdvicePublic) -> None:
    """The rounds' label-noise estimates and yield, and whether another round is worth it."""
    st.subheader("Refinement statistics")
    if rounds:
        st.dataframe(overview.refinement_table(rounds), hide_index=True, width="stretch")
    if stop.stop:
        st.success(f"Suggestion: stop refining. {stop.reason}")
    else:
        st.info(f"Suggestion: keep refining. {stop.reason}")


def label_picker_figure(picture: Picture, *, height: int, drawing: bool = False) -> go.Figure:
    """The review picture as a Plotly figure whose label rectangles can be clicked.

    The overlay PNG is the background (drawn by `regrasp.grasp.drawing`, so it matches every other
    picture of the app); one marker per label sits on its pick handle, green or orange when
    marked wrong, with the label's number on hover. Streamlit's selection events on these
    markers (a click, a box or a lasso) are what marks rectangles wrong: no JavaScript of
    ours. No drag mode is set, so Streamlit keeps clicks selecting points (a box or lasso
    drag mode would turn click-selection off) and the tool bar offers box and lasso. The
    axes are the picture's pixels, y down, locked to the image's aspect.

    drawing: the lasso is the drag mode, and a drag from one jaw to the other draws a
    grasp (`picked_stroke` reads its ends) instead of picking labels.
    """
    import plotly.graph_objects as go

    width_px, height_px = picture.size
    numbers = np.arange(1, len(picture.handles) + 1)
    colours = np.where(picture.wrong, _hex(viz.WRONG), _hex(viz.LABEL))
    figure = go.Figure(
        go.Scatter(
            x=picture.handles[:, 0] if len(numbers) else [],
            y=picture.handles[:, 1] if len(numbers) else [],
            mode="markers",
            customdata=numbers,
            marker={
                "size": np.where(picture.wrong, 10, 7),
                "color": colours,
                "opacity": 0.85,
                "line": {"width": 0.5, "color": "black"},
            },
            hovertemplate="label %{customdata}<extra></extra>",
            # Selection must not fade the other markers: the picture itself shows the marks.
            selected={"marker": {"opacity": 0.85}},
            unselected={"marker": {"opacity": 0.85}},
            showlegend=False,
        )
    )
    source = "data:image/png;base64," + base64.b64encode(picture.png).decode("ascii")
    figure.add_layout_image(
        source=source,
        xref="x",
        yref="y",
        x=0,
        y=0,
        sizex=width_px,
        sizey=height_px,
        sizing="stretch",
        layer="below",
    )
    axis = {"visible": False, "showgrid": False, "zeroline": False}
    figure.update_xaxes(range=[0, width_px], constrain="domain", **axis)
    figure.update_yaxes(
        range=[height_px, 0], scaleanchor="x", scaleratio=1, constrain="domain", **axis
    )
    figure.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        hovermode="closest",
        hoverdistance=12,
        newselection={"line": {"color": _hex(viz.DRAWN if drawing else viz.WRONG)}},
    )
    if drawing:
        figure.update_layout(dragmode="lasso")
    return figure


def label_picker(
    picture: Picture,
    *,
    key: str,
    height: int,
    on_pick: Callable[..., None],
    args: tuple[object, ...] = (),
    drawing: bool = False,
) -> None:
    """Show `label_picker_figure`; a selection calls `on_pick(*args)` (read `key` there)."""
    st.plotly_chart(
        label_picker_figure(picture, height=height, drawing=drawing),
        key=key,
        on_select=functools.partial(on_pick, *args),  # plotly_chart takes no `args`
        selection_mode=("points", "box", "lasso"),
        theme=None,
        width="stretch",
        config={
            "displaylogo": False,
            "scrollZoom": False,
            "modeBarButtonsToRemove": ["toImage"],
        },
    )


def picked_numbers(selection: object) -> list[int]:
    """Label numbers (1-based) of the markers a Plotly selection event holds, ascending."""
    if not selection:
        return []
    points = selection["selection"]["points"] if "selection" in selection else []
    return sorted({int(p["point_index"]) + 1 for p in points if "point_index" in p})


def picked_stroke(selection: object) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The ends of the lasso a Plotly selection event holds, in picture pixels: where the
    drag started and where it was let go (None when the event holds no lasso)."""
    if not selection or "selection" not in selection:
        return None
    lassos = selection["selection"].get("lasso") or []
    if not lassos:
        return None
    xs, ys = lassos[-1].get("x") or [], lassos[-1].get("y") or []
    if len(xs) < 2 or len(xs) != len(ys):
        return None
    return (float(xs[0]), float(ys[0])), (float(xs[-1]), float(ys[-1]))


def _hex(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def quality_reason(item: ReviewItemPublic) -> str:
    """One line saying why the label-quality score queued the item ("" when unscored)."""
    quality = item.quality
    if quality is None or quality.kind is None:
        return ""
    numbers = {g.grasp_id: n for n, g in enumerate(item.labels, 1)}
    suspects = ", ".join(str(numbers[g]) for g in quality.suspect_grasp_ids if g in numbers)
    stars = ", ".join(str(i + 1) for i in quality.unmatched)
    if quality.kind == "missing":
        said = []  # what the labels' reach says, when it is short of complete
        if quality.coverage is not None and quality.coverage < COVERAGE_FULL:
            said.append(f"the labels reach only {quality.coverage:.0%} of the object")
        if quality.grasp_coverage is not None and quality.grasp_coverage < COVERAGE_FULL:
            said.append(
                f"{'they' if said else 'the labels'} match only "
                f"{quality.grasp_coverage:.0%} of the grasps its outline allows"
            )
        reach = "; ".join(said)
        if stars:
            text = f"the model is sure of grasps no label covers (★ {stars})" + (
                f"; {reach}" if reach else ""
            )
        else:
            text = reach or "the model's confident grasps disagree with the labels"
    elif quality.kind == "wrong_action":
        text = "labels whose jaws would close through the object" + (
            f" ({suspects})" if suspects else ""
        )
    else:
        text = "labels unlike the model's confident grasp there" + (
            f" ({suspects})" if suspects else ""
        )
    return f"{text}; label quality {quality.quality:.2f}"
