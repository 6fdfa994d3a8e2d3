"""Wingmask dashboard entry point: ``streamlit run streamlit_app.py``.

The page list lives in :data:`ui_common.PAGES`, shared with the pages' links.
"""

import streamlit as st

import ui_common

st.set_page_config(page_title="Wingmask", page_icon="🦋", layout="wide")
ui_common.run_app()
