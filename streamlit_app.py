"""Wingmask dashboard entry point: ``streamlit run streamlit_app.py``."""

import os

# Quiet TensorFlow's C++ start-up logging before any page imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Wingmask", page_icon="🦋", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/segment.py", title="Segment", icon=":material/content_cut:"),
    st.Page("pages/compare.py", title="Compare models", icon=":material/compare:"),
    st.Page("pages/validation.py", title="Validation metrics", icon=":material/bar_chart:"),
]
st.navigation(pages).run()
