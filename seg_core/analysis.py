"""One photo through one model, step by step, as the dashboard and the memory soak run it.

The steps are split by cost. :func:`analyse` decodes the photo and runs the
model once (the dashboard caches its result per photo, model and options);
:func:`finish` thresholds, cleans and scores that probability map at the
current settings, cheap enough to redo on every slider move; :func:`views`
makes the pictures that are shown. :mod:`seg_core.memcheck` calls the same
three functions, so it measures the Segment page's own code path.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from seg_core.imaging import ImageSource, InvalidImageError, check_same_size, load_image, load_mask
from seg_core.inference import InferenceOptions, Predictor, load_predictor, threshold_mask
from seg_core.metrics import all_metrics, confusion
from seg_core.postprocess import clean_mask, cutout, display_copy, mask_image, on_checkerboard, overlay


@dataclass(frozen=True)
class Analysis:
    """A decoded photo and one model's probability map for it (both read-only).

    Attributes:
        image: the RGB photo at its own size.
        prob: butterfly probabilities, same height and width.
        model_ms: wall time of ``predict_proba`` on this photo: preprocessing,
            the network pass(es) and resizing back to the photo's size,
            including any wait for another caller of the same model.
        measured_at: when that time was measured (``time.time()``), so a
            cached result can say how old its timing is.
        options: the inference options the map was made with.
    """

    image: np.ndarray
    prob: np.ndarray
    model_ms: float
    measured_at: float
    options: InferenceOptions = field(default_factory=InferenceOptions)


def analyse(source: ImageSource, predictor: Predictor, options: InferenceOptions | None = None) -> Analysis:
    """Decode a photo and run a model on it once.

    The arrays are made read-only because the dashboard shares one analysis
    between reruns and sessions; every later step works on copies.

    Raises:
        InvalidImageError: the input is not a usable photo.
    """
    options = options or InferenceOptions()
    image = load_image(source)
    measured_at = time.time()
    started = time.perf_counter()
    prob = predictor.predict_proba(image, options)
    model_ms = (time.perf_counter() - started) * 1000.0
    image.flags.writeable = False
    prob.flags.writeable = False
    return Analysis(image, prob, model_ms, measured_at, options)


def is_cached(analysis: Analysis, asked_at: float) -> bool:
    """True when ``analysis`` was measured before ``asked_at`` (``time.time()``), i.e. came from a cache."""
    return analysis.measured_at < asked_at


def age_text(seconds: float) -> str:
    """A short, rounded age such as ``"4 s"``, ``"12 min"`` or ``"1.5 h"``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def load_warm(name: str) -> Predictor:
    """Load a model and run it once on a small blank photo.

    The first call of a U-Net traces its graph; doing that here keeps it out of
    the first real photo's time.

    Raises:
        ModelLoadError: unknown name, or a model folder that does not load.
    """
    predictor = load_predictor(name)
    predictor.predict_proba(np.zeros((32, 32, 3), dtype=np.uint8))
    return predictor


def digest(data: bytes) -> str:
    """SHA-256 of uploaded bytes: the cache key of a photo."""
    return hashlib.sha256(data).hexdigest()


def load_truth(source: ImageSource, image: np.ndarray) -> np.ndarray:
    """Decode a ground-truth mask and check that it was made for ``image``.

    Raises:
        InvalidImageError: unreadable mask, or its size differs from the photo's.
    """
    truth = load_mask(source)
    check_same_size(image, truth)
    return truth


@dataclass(frozen=True)
class MaskSettings:
    """How a probability map becomes the final mask.

    Attributes:
        threshold: probability at or above which a pixel is butterfly.
        largest: keep only the largest connected region.
        holes: fill holes inside the butterfly.
    """

    threshold: float = 0.5
    largest: bool = False
    holes: bool = False


@dataclass(frozen=True)
class Outcome:
    """What one photo produced at the current settings.

    Attributes:
        analysis: the decoded photo and probability map behind it.
        mask: the final boolean mask, at the photo's size.
        scores: every metric of :data:`seg_core.metrics.METRICS` against the
            ground truth, or None without a usable one.
        truth_error: why a given ground truth could not be used, if it could not.
    """

    analysis: Analysis
    mask: np.ndarray
    scores: dict[str, float] | None = None
    truth_error: InvalidImageError | None = None


def finish(analysis: Analysis, settings: MaskSettings, truth: ImageSource | None = None) -> Outcome:
    """Threshold, clean and (given a ground-truth mask) score one analysed photo.

    A ground truth that cannot be used is reported in the outcome rather than
    raised, because the photo itself still has its mask.
    """
    mask = clean_mask(
        threshold_mask(analysis.prob, settings.threshold), largest_region=settings.largest, holes=settings.holes
    )
    if truth is None:
        return Outcome(analysis, mask)
    try:
        scores = all_metrics(confusion(mask, load_truth(truth, analysis.image)))
    except InvalidImageError as exc:
        return Outcome(analysis, mask, truth_error=exc)
    return Outcome(analysis, mask, scores)


def views(image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The pictures shown for a photo, at display size (huge photos are shrunk; downloads are not).

    Returns:
        Caption -> picture: the original, the mask, the overlay and the cut-out on a checkerboard.
    """
    small_image, small_mask = display_copy(image, mask)
    return {
        "Original": small_image,
        "Mask": mask_image(small_mask),
        "Overlay": overlay(small_image, small_mask),
        "Cut-out": on_checkerboard(cutout(small_image, small_mask)),
    }
