"""The bad-input matrix through the Segment page (Streamlit AppTest): a mask or an st.error per file.

All the matrix's files are uploaded together, with ground-truth masks for the
photos that have one, so a single page run covers every case; each case is
then checked in its own section of the page (the part under its file name).
"""

import mimetypes

import pytest
from bad_inputs import Case, cases, encode, large_case, mismatched_mask, sample_photo
from PIL import Image
from streamlit.testing.v1 import AppTest

import ui_common
from seg_core.core.paths import REPO_ROOT

APP = str(REPO_ROOT / "streamlit_app.py")
PAGE = "pages/segment.py"
TIMEOUT = 180
MISMATCH = "mismatch.jpg"


def upload(case: Case) -> tuple[str, bytes, str]:
    return case.filename, case.data, mimetypes.guess_type(case.filename)[0] or "application/octet-stream"


def truth_upload(case: Case) -> tuple[str, bytes, str]:
    stem = case.filename.rsplit(".", 1)[0]
    return f"{stem}_mask.png", encode(Image.fromarray(case.truth), "PNG"), "image/png"


def run_segment_page(photos: list[Case], extra_photos=(), truths=()) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(PAGE)
    at.run()
    at.radio(key="seg_source").set_value(ui_common.UPLOAD)
    at.run()
    at.file_uploader(key="seg_upload").set_value([upload(c) for c in photos] + list(extra_photos))
    at.file_uploader(key="seg_truth").set_value([truth_upload(c) for c in photos if c.truth is not None] + list(truths))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sections(at: AppTest) -> dict[str, list]:
    """The page's elements grouped under the file-name subheader they follow."""
    groups: dict[str, list] = {}
    current = None
    for node in at.main:
        if node.type == "subheader":
            current = groups.setdefault(node.value, [])
        elif current is not None:
            current.append(node)
    return groups


def of_type(nodes: list, kind: str) -> list:
    return [n for n in nodes if n.type == kind]


def metric(nodes: list, label: str) -> str:
    return next(n.value for n in of_type(nodes, "metric") if n.label == label)


def check_section(nodes: list, case: Case) -> None:
    errors = [e.value for e in of_type(nodes, "error")]
    if not case.valid:
        assert len(errors) == 1 and case.filename in errors[0] and case.error in errors[0], errors
        assert not of_type(nodes, "image")
        return
    assert not errors
    assert [c for image in of_type(nodes, "image") for c in image.captions] == [
        "Original",
        "Mask",
        "Overlay",
        "Cut-out",
    ]
    height, width = case.shape
    assert metric(nodes, "Size") == f"{width}x{height}"
    if case.truth is not None:
        assert float(metric(nodes, "IoU")) >= case.min_iou


@pytest.fixture(scope="module")
def matrix_page():
    mismatch = (MISMATCH, encode(sample_photo(), "JPEG"), "image/jpeg")
    wrong_truth = ("mismatch_mask.png", mismatched_mask(), "image/png")
    at = run_segment_page(list(cases()), [mismatch], [wrong_truth])
    return at, sections(at)


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_each_upload_gets_a_mask_or_an_error(matrix_page, case):
    _, by_file = matrix_page
    check_section(by_file[case.filename], case)


def test_the_batch_summary_counts_only_the_good_uploads(matrix_page):
    at, _ = matrix_page
    good = sum(c.valid for c in cases()) + 1
    summary = " ".join(m.value for m in at.markdown)
    assert f"{good} of {len(cases()) + 1} photos segmented" in summary


def test_a_mask_of_another_size_is_flagged_and_the_photo_still_segmented(matrix_page):
    _, by_file = matrix_page
    nodes = by_file[MISMATCH]
    warnings = [w.value for w in of_type(nodes, "warning")]
    assert len(warnings) == 1 and "214x150" in warnings[0] and "429x300" in warnings[0]
    assert len(of_type(nodes, "image")) == 4


def test_a_48_megapixel_upload_gets_a_full_size_mask():
    big = large_case()
    check_section(sections(run_segment_page([big]))[big.filename], big)
