import numpy as np
import pytest

from seg_core.core.config import UNetConfig
from seg_core.models.registry import UnknownModelError, create_model, list_models, model_config
from seg_core.models.unet import build_unet


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_maps_images_to_probabilities(name):
    model = create_model(name, input_size=64)
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 64, 64, 1)
    assert np.all((y >= 0) & (y <= 1))


def test_default_input_is_256_rgb():
    model = create_model("unet8")
    assert model.input_shape == (None, 256, 256, 3)
    assert model.output_shape == (None, 256, 256, 1)


def test_classic_reference_has_the_original_size():
    assert 30e6 < create_model("unet_classic").count_params() < 32e6


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="unet16"):
        create_model("resnet9000")


def test_overrides_and_config_round_trip():
    config = model_config("unet16", depth=3, input_size=32)
    assert UNetConfig.from_dict(config.to_dict()) == config
    assert build_unet(config).output_shape == (None, 32, 32, 1)
    with pytest.raises(ValueError, match="unknown U-Net config keys"):
        UNetConfig.from_dict({"width": 3})


def test_input_size_must_survive_the_pooling():
    with pytest.raises(ValueError, match="divisible"):
        build_unet(UNetConfig(input_size=100, depth=4))
