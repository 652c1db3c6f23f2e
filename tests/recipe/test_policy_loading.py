"""A policy that cannot be loaded is one error naming `model.path`, whatever transformers
raised: the entry points report it in one line and exit 2."""

from __future__ import annotations

import pytest

from recipe.policy import PolicyLoadError, load_policy, load_tokenizer
from recipe.schema import ModelConfig


@pytest.mark.parametrize("load", [load_policy, load_tokenizer])
def test_a_folder_without_a_model_is_named(tmp_path, load):
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(PolicyLoadError, match=f"^model.path {empty}: "):
        load(ModelConfig(path=str(empty)))


def test_an_unreadable_weight_file_is_the_same_error(tmp_path):
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x01")
    with pytest.raises(PolicyLoadError, match="model.safetensors is damaged") as e:
        load_policy(ModelConfig(path=str(folder)))
    assert isinstance(e.value, FileNotFoundError)  # caught where a missing input is
