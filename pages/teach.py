"""Teach page: fine-tune a model on a collection of your own photos in the background, then compare it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import ui_common
from seg_core.core.paths import MODELS_DIR
from seg_core.data.collections import CollectionError, collections_dir
from seg_core.data.teaching import HOLD_OUT_FROM, MAX_NAME_LENGTH, MAX_PAIRS, MIN_PAIRS, AdaptError
from seg_core.service import jobs
from seg_core.service.teach import start_adaptation, teachable_collections, teachable_models, training_history

ui_common.require_app_navigation()

#: The job this session started: {"id": job id, "name": the new model's name}.
JOB_KEY = "teach_job"
#: A finished job's outcome, kept for this session's page: {"state", "name", "card" or "message", "log"}.
DONE_KEY = "teach_done"
#: The Validation page selects the collection named here when it opens (its PENDING_KEY).
VALIDATION_PENDING = "val_pending_collection"
#: Why the start button's callback could not start a fine-tune, for the page to show.
ERROR_KEY = "teach_error"
#: Set by the compare button: the next run opens the Validation page (a callback cannot switch pages).
GO_COMPARE = "teach_go_compare"
POLL_S = 1.0
#: The fine-tune's whole time by default: enough on a 2-core CPU.
DEFAULT_MINUTES = 10
#: Log lines shown under a running or failed job.
LOG_SHOWN = 40


def collection_label(found: dict, name: str) -> str:
    """``moths (120 photos)``."""
    return f"{name} ({found[name].pairs} photos)"


def default_name(collection: str, base: str) -> str:
    """The suggested name of the new model: the collection's, then the base's, cut to fit."""
    return f"{collection}-{base}"[:MAX_NAME_LENGTH].rstrip("-_.")


def start() -> None:
    """Start the fine-tune the form describes, in the background (the start button's callback).

    Why it cannot start is kept under :data:`ERROR_KEY` for the page to show.
    """
    state = st.session_state
    collection, base = state.get("teach_collection"), state.get("teach_base")
    name = (state.get("teach_name") or "").strip() or default_name(collection, base)
    try:
        status = start_adaptation(
            base, collection, name, state.get("teach_minutes", DEFAULT_MINUTES), MODELS_DIR, collections_dir()
        )
    except (AdaptError, CollectionError, jobs.JobBusyError) as exc:
        state[ERROR_KEY] = f"**The fine-tune cannot start.** {exc}"
        return
    state.pop(DONE_KEY, None)
    state[JOB_KEY] = {"id": status.id, "name": name}


def scores_chart(name: str) -> None:
    """The per-photo IoU of each epoch so far, on the held-out collection photos and on Leeds photos."""
    history = training_history(MODELS_DIR, name)
    if history is None or history.empty:
        st.caption("Scores appear after the first epoch.")
        return
    shown = [c for c in ("collection_iou", "leeds_iou") if c in history.columns]
    names = {"collection_iou": "collection (held out)", "leeds_iou": "Leeds photos"}
    st.line_chart(
        history.set_index("epoch")[shown].rename(columns=names), x_label="epoch", y_label="IoU per photo", height=220
    )


@st.fragment(run_every=POLL_S)
def job_progress(job: dict) -> None:
    """The running fine-tune: progress, scores as it goes, cancel and the log; a finished one reruns the page."""
    status = jobs.process_jobs().status(job["id"])
    if status is not None and not status.finished:
        st.progress(status.fraction, text=f"{status.name}: {status.message}")
        st.button(
            "Cancel", key="teach_cancel", icon=":material/stop:", on_click=jobs.process_jobs().cancel, args=(job["id"],)
        )
        scores_chart(job["name"])
        with st.expander("Log"):
            st.code("\n".join(status.log[-LOG_SHOWN:]) or "starting...", language=None)
        return
    st.session_state.pop(JOB_KEY, None)
    if status is not None:
        done = {"state": status.state, "name": job["name"], "log": status.log}
        if status.state == jobs.DONE:
            done["card"] = status.result.card
            # The Home page's model table is cached; the new model must show there too.
            ui_common.catalogue.clear()
        else:
            done["message"] = status.message
        st.session_state[DONE_KEY] = done
    st.rerun()


def before_after(card: dict) -> pd.DataFrame:
    """Before/after per-photo IoU at the network's input size, from the card."""
    validation = card["validation"]
    rows = [
        {"photos": key.removesuffix("_iou"), "before": validation["before"][key], "after": validation["after"][key]}
        for key in validation["before"]
        if key.endswith("_iou")
    ]
    return pd.DataFrame(rows)


def finished(done: dict) -> None:
    """How the last fine-tune of this session ended, with a link to compare the new model with its base."""
    if done["state"] == jobs.CANCELLED:
        st.info(f"The fine-tune of **{done['name']}** was cancelled; nothing was kept.")
        return
    if done["state"] == jobs.FAILED:
        st.error(f"**The fine-tune of {done['name']} failed.** {done['message']}")
        st.code("\n".join(done["log"][-LOG_SHOWN:]), language=None)
        return
    card = done["card"]
    base = card["base_model"]["name"]
    st.success(
        f"**{card['name']}** is ready: it is in every model picker, the API and the batch CLI "
        f"(best epoch {card['best_epoch']} of {card['epochs_run']}, {card['total_seconds'] / 60:.1f} min)."
    )
    st.caption(card["validation"]["measured_on"].capitalize() + f"; {card['validation']['metric']}.")
    st.dataframe(before_after(card), hide_index=True)
    comparison = card.get("comparison")
    if comparison is None:
        st.caption(f"No photos were held out (the collection has fewer than {HOLD_OUT_FROM}), so nothing to compare.")
        return
    scores = ", ".join(f"{model} {value:.3f}" for model, value in comparison["iou_per_photo"].items())
    st.write(f"On the {comparison['photos']} held-out photos, at full size with default settings: {scores}.")
    if comparison["evaluation"]:
        st.button(
            f"Compare {card['name']} with {base} on the held-out photos",
            key="teach_compare",
            icon=":material/compare:",
            on_click=compare,
            args=(comparison["evaluation"],),
        )


def compare(evaluation: str) -> None:
    """Open the Validation page on the held-out photos' evaluation (the compare button's callback)."""
    st.session_state[VALIDATION_PENDING] = evaluation
    st.session_state[GO_COMPARE] = True


if st.session_state.pop(GO_COMPARE, False):
    st.switch_page("pages/validation.py")
st.title("Teach Wingmask your species")
st.write(
    "Fine-tune a copy of a model on a collection of your own photos with corrected masks, so it learns species "
    "it has never seen. Correct masks on the **Segment** page and save them to a collection, or put a folder "
    f"with `images/` and `masks/` in `{collections_dir()}`. Part of a collection of {HOLD_OUT_FROM} photos or "
    "more is held apart to choose the best checkpoint and to compare the new model with its base; Leeds "
    "photos (without the dataset, the base's own answers) are mixed in so the model does not forget what it "
    "knew. It runs in the background, one at a time."
)
found = {c.name: c for c in teachable_collections()}
models = teachable_models()
busy = jobs.process_jobs().running()
mine = st.session_state.get(JOB_KEY)
with st.container(border=True):
    if not found:
        st.info(f"No collection yet in {collections_dir()}.")
    collection = st.selectbox(
        "Collection",
        list(found),
        format_func=lambda name: collection_label(found, name),
        key="teach_collection",
        persist_state=ui_common.KEEP,
        help=f"At least {MIN_PAIRS} photos with masks, at most {MAX_PAIRS}.",
    )
    base = st.selectbox("Start from", models, key="teach_base", persist_state=ui_common.KEEP)
    st.text_input(
        "New model's name",
        key="teach_name",
        persist_state=ui_common.KEEP,
        placeholder=default_name(collection, base) if collection and base else "",
        help=f"Up to {MAX_NAME_LENGTH} letters, digits, '-', '_' or '.'; a name no model has yet.",
    )
    st.slider(
        "Minutes",
        2,
        30,
        DEFAULT_MINUTES,
        key="teach_minutes",
        persist_state=ui_common.KEEP,
        help="The whole run: training, the precision check, the comparison. Ten is enough on a 2-core CPU.",
    )
    too_small = collection is not None and found[collection].pairs < MIN_PAIRS
    if too_small:
        st.warning(f"**{collection}** has {found[collection].pairs} photos with masks; a fine-tune needs {MIN_PAIRS}.")
    if busy is not None and (mine is None or busy.id != mine["id"]):
        st.info(f"Another job is running ({busy.name}: {busy.message}); yours can start once it has finished.")
    st.button(
        "Start teaching",
        type="primary",
        key="teach_start",
        icon=":material/school:",
        disabled=busy is not None or collection is None or base is None or too_small,
        on_click=start,
    )
    if ERROR_KEY in st.session_state:
        st.error(st.session_state.pop(ERROR_KEY))
if st.session_state.get(JOB_KEY) is not None:
    job_progress(st.session_state[JOB_KEY])
elif st.session_state.get(DONE_KEY) is not None:
    finished(st.session_state[DONE_KEY])
