"""Version diff viewer: what changed between two versions, image by image (Figure 8)."""

from __future__ import annotations

import streamlit as st

from regrasp.grasp import drawing as viz
from regrasp.grasp.imaging import decode_rgb
from services.review_ui import overview, state

st.title("Version diff")
api = state.api()
datasets = api.list_datasets()
if not datasets:
    st.info("No datasets yet.")
    st.stop()
dataset = st.selectbox("Dataset", datasets, format_func=lambda d: d.name, key="diff_dataset")
versions = [v.number for v in api.list_versions(dataset.id)]
if len(versions) < 2:
    st.info("This dataset has a single version.")
    st.stop()
left, right = st.columns(2)
v_from = left.selectbox("From", versions, index=len(versions) - 2, key="diff_from")
v_to = right.selectbox("To", versions, index=len(versions) - 1, key="diff_to")
diff = api.diff(dataset.id, v_from, v_to, limit=5000)
cols = st.columns(4)
cols[0].metric("Grasps added", diff.added_grasp_count)
cols[1].metric("Grasps removed", diff.removed_grasp_count)
cols[2].metric("Images added", len(diff.added_images))
cols[3].metric("Images removed", len(diff.removed_images))
changes = overview.changes_by_image(diff)
if not changes:
    st.stop()
image_id = st.selectbox(
    "Image", list(changes), format_func=lambda i: changes[i].name, key="diff_image"
)
change = changes[image_id]
rgb = decode_rgb(api.image_bytes(image_id, "rgb"))
picture = viz.before_after(rgb, before=change.before, after=change.after, size=512, zoom=True)
st.image(viz.to_png(picture), width="stretch")
st.caption(
    f"Left v{v_from}: rectangles removed in v{v_to} in orange ✕. Right v{v_to}: added labels "
    f"in thick green. Only the rectangles that changed are drawn ({len(change.removed)} "
    f"removed, {len(change.added)} added)."
)
