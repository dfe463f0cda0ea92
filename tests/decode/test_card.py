"""The model card: cards written by the current version load unchanged; bad cards name the field."""

import json
import shutil

import pytest

from rtdecode.decode.card import CARD_VERSION, ModelCard, Window, new_card, read_card, write_card
from rtdecode.errors import ModelError
from tests import ROOT

CARDS = ROOT / "tests" / "data" / "cards"


@pytest.mark.parametrize("name", ["ridge_onnx_v1.json", "amortized_v1.json", "standin_mlp_v1.json"])
def test_cards_written_by_version_1_load_and_round_trip(name, tmp_path):
    """The files are card.json exactly as rtdecode wrote them before the card became typed
    (a ridge model after 'rtdecode compile', a fitted amortized model, the benchmark stand-in)."""
    shutil.copy(CARDS / name, tmp_path / "card.json")
    text = (tmp_path / "card.json").read_text()
    card = read_card(tmp_path)
    raw = json.loads(text)
    assert card.method == raw["method"] and card.neurons == raw["neurons"] and card.card_version == 1
    assert card.window == Window(raw["window"]["lag_min"], raw["window"]["bins"])
    assert card.frame_shape == tuple(raw["frame_shape"]) and card.in_shape == (raw["neurons"], raw["window"]["bins"])
    assert card.to_dict() == raw and list(card.to_dict()) == list(raw)  # same fields, same order
    write_card(tmp_path, card)
    assert (tmp_path / "card.json").read_text() == text  # byte for byte


def test_amortized_card_fields_are_attributes():
    card = ModelCard.from_dict(json.loads((CARDS / "amortized_v1.json").read_text()))
    assert card.amortized == {"k": 2, "hidden": 512, "dropout": 0.2}
    assert card.inverse["iterations"] == 20 and card.encoder["models"] == 1 and card.warm_iterations == 2
    assert card.onnx is None and card.training["train_trials"] == 3


@pytest.mark.parametrize("change, needle", [
    ({"neuron": 5}, "unknown field neuron"),
    ({"neurons": None}, "missing field neurons"),
    ({"window": None}, "missing field window"),
    ({"neurons": "20"}, "field neurons must be int"),
    ({"neurons": 0}, "field neurons must be a positive integer"),
    ({"window": {"lag_min": 0}}, "field window must be"),
    ({"window": {"lag_min": 0, "bins": 0}}, "field window.bins must be a positive integer"),
    ({"frame_shape": [36]}, "field frame_shape must be [height, width]"),
    ({"format": "other"}, "format is 'other'"),
    ({"card_version": CARD_VERSION + 1}, "newer than this rtdecode understands"),
])
def test_a_bad_card_names_the_field(tmp_path, change, needle):
    raw = json.loads((CARDS / "ridge_onnx_v1.json").read_text())
    for k, v in change.items():
        if v is None:
            del raw[k]
        else:
            raw[k] = v
    (tmp_path / "card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError) as e:
        read_card(tmp_path)
    assert needle in str(e.value) and "card.json" in str(e.value)


def test_new_card_is_frozen_and_replace_makes_a_copy():
    card = new_card("ridge", 10, 0, 8, (36, 64), 30.0)
    with pytest.raises(AttributeError):
        card.neurons = 11
    other = card.replace(onnx={"file": "decoder.onnx"})
    assert card.onnx is None and other.onnx == {"file": "decoder.onnx"}
    assert "onnx" not in card.to_dict() and ModelCard.from_dict(other.to_dict()) == other


def test_version_2_keeps_one_settings_block_per_method(tmp_path):
    card = new_card("amortized", 10, 0, 8, (36, 64), 30.0, encoder={"models": 1}, inverse={"iterations": 5},
                    warm_iterations=2, amortized={"kind": "image_prior"}, training={"train_trials": 3})
    raw = card.to_dict()
    assert raw["card_version"] == CARD_VERSION == 2
    assert raw["method_settings"] == {"amortized": {"encoder": {"models": 1}, "inverse": {"iterations": 5},
                                                    "warm_iterations": 2, "amortized": {"kind": "image_prior"}}}
    assert not {"encoder", "inverse", "warm_iterations", "amortized"} & set(raw)
    write_card(tmp_path, card)
    back = read_card(tmp_path)
    assert back == card and back.inverse == {"iterations": 5} and back.warm_iterations == 2
    assert new_card("ridge", 10, 0, 8, (36, 64), 30.0).to_dict()["method_settings"] == {"ridge": {}}


def test_a_version_1_card_gives_its_settings_as_the_methods_block():
    card = ModelCard.from_dict(json.loads((CARDS / "amortized_v1.json").read_text()))
    assert card.card_version == 1 and set(card.settings) == {"encoder", "inverse", "warm_iterations", "amortized"}
    assert "method_settings" not in card.to_dict()  # written back as it was read (version 1)
    standin = ModelCard.from_dict(json.loads((CARDS / "standin_mlp_v1.json").read_text()))
    assert standin.architecture["activation"] == "relu" and set(standin.settings) == {"architecture"}


@pytest.mark.parametrize("change, needle", [
    ({"method_settings": {"amortized": {}}}, "method_settings must be {\"ridge\": {...}}"),
    ({"method_settings": {"ridge": []}}, "method_settings must be"),
    ({"method_settings": {"ridge": {"warm_iterations": 0}}}, "method_settings.ridge.warm_iterations must be a positive"),
    ({"encoder": {}}, "unknown field encoder"),  # a version 1 field in a version 2 card
])
def test_a_bad_version_2_settings_block_names_the_field(change, needle):
    raw = new_card("ridge", 10, 0, 8, (36, 64), 30.0).to_dict() | change
    with pytest.raises(ModelError) as e:
        ModelCard.from_dict(raw)
    assert needle in str(e.value)
