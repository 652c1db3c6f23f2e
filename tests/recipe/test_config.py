"""The config system: extends, overrides with coercion, strict errors that name key and file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from recipe.config import (
    ConfigError,
    FieldError,
    doc,
    load_config,
    parse_cli,
    save_config,
)
from recipe.config_fields import describe
from recipe.schema import RunConfig, TagsConfig

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Inner:
    rate: float = doc(0.5, "a float")
    steps: int = doc(3, "an int")
    name: str = doc("x", "a string")
    flag: bool = doc(False, "a bool")
    maybe: int | None = doc(None, "optional int")
    items: list[str] = doc([], "a list")


@dataclass
class Outer:
    inner: Inner = doc(Inner(), "a section")
    top: int = doc(1, "a top-level int")


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_without_a_file():
    cfg = load_config(Outer)
    assert cfg.inner.rate == 0.5 and cfg.inner.items == [] and cfg.top == 1


def test_default_lists_are_not_shared():
    a, b = Inner(), Inner()
    a.items.append("z")
    assert b.items == []


def test_extends_child_wins_and_sections_merge(tmp_path):
    write(tmp_path / "base.yaml", {"inner": {"rate": 0.1, "steps": 7}, "top": 5})
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml", "inner": {"rate": 0.9}})
    cfg = load_config(Outer, child)
    assert cfg.inner.rate == 0.9  # child
    assert cfg.inner.steps == 7  # base, same section
    assert cfg.top == 5


def test_overrides_coerce_to_field_types(tmp_path):
    path = write(tmp_path / "c.yaml", {"inner": {"name": "a"}})
    cfg = load_config(
        Outer,
        path,
        [
            "inner.rate=2e-6",
            "inner.steps=12",
            "inner.name=123",
            "inner.flag=true",
            "inner.maybe=null",
            "inner.items=[a, b]",
        ],
    )
    assert cfg.inner.rate == pytest.approx(2e-6)
    assert cfg.inner.steps == 12
    assert cfg.inner.name == "123"  # a string field keeps the text as written
    assert cfg.inner.flag is True
    assert cfg.inner.maybe is None
    assert cfg.inner.items == ["a", "b"]


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # PyYAML reads 2e-6 as a string; a float field must still accept it.
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  rate: 2e-6\n")
    assert load_config(Outer, path).inner.rate == pytest.approx(2e-6)


def test_unknown_key_names_path_and_file(tmp_path):
    path = write(tmp_path / "bad.yaml", {"inner": {"rat": 0.1}})
    with pytest.raises(ConfigError) as e:
        load_config(Outer, path)
    assert "inner.rat" in str(e.value) and "bad.yaml" in str(e.value)
    assert "rate" in str(e.value)  # lists what is accepted


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    write(tmp_path / "base.yaml", {"inner": {"bogus": 1}})
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml", "top": 2})
    with pytest.raises(ConfigError, match=r"inner\.bogus.*base\.yaml"):
        load_config(Outer, child)


def test_wrong_type_names_path_and_source(tmp_path):
    path = write(tmp_path / "bad.yaml", {"inner": {"steps": "many"}})
    with pytest.raises(ConfigError, match=r"inner\.steps.*bad\.yaml.*expected int"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match=r"inner\.steps.*command line"):
        load_config(Outer, None, ["inner.steps=1.5"])
    with pytest.raises(ConfigError, match="expected bool"):
        load_config(Outer, None, ["inner.flag=maybe"])


def test_unknown_override_key_is_an_error():
    with pytest.raises(ConfigError, match=r"inner\.nope.*command line"):
        load_config(Outer, None, ["inner.nope=1"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(Outer, None, ["inner.steps"])


def test_a_section_cannot_be_a_scalar(tmp_path):
    path = write(tmp_path / "bad.yaml", {"inner": 3})
    with pytest.raises(ConfigError, match="inner"):
        load_config(Outer, path)


def test_missing_file_and_cycle(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Outer, tmp_path / "a.yaml")


def test_literal_choices_are_enforced():
    with pytest.raises(ConfigError, match=r"rollout\.backend.*one of"):
        load_config(RunConfig, None, ["rollout.backend=tgi"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(RunConfig, REPO / "configs/embedded/stage2.yaml", ["algo.kl_coef=0.01"])
    out = save_config(cfg, tmp_path / "run")
    again = load_config(RunConfig, out)
    assert again == cfg
    assert again.algo.kl_coef == 0.01


def test_parse_cli_reads_config_and_overrides():
    cfg = parse_cli(
        RunConfig,
        ["--config", str(REPO / "configs/embedded/stage1.yaml"), "reward.format_penalty=-1"],
    )
    assert cfg.reward.name == "stage1"
    assert cfg.reward.format_penalty == -1.0


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in (REPO / "configs").rglob("*.yaml")
        # miniwiki.yaml and filter.yaml have schemas of their own (tests/miniwiki,
        # tests/data_filtering load them).
        if p.parent.name in ("embedded", "paper") and p.name not in ("miniwiki.yaml", "filter.yaml")
    ),
)
def test_every_shipped_run_config_loads(path):
    cfg = load_config(RunConfig, path)
    assert cfg.retriever.topk >= 1


def test_paper_config_has_the_published_values():
    cfg = load_config(RunConfig, REPO / "configs/paper/stage1.yaml")
    assert cfg.rollout.samples_per_prompt == 16
    assert cfg.trainer.lr == pytest.approx(2e-6)
    assert cfg.algo.clip_eps == 0.2
    assert cfg.retriever.topk == 3
    assert cfg.rollout.max_retrievals == 8
    assert cfg.rollout.max_segment_tokens == 512
    assert cfg.retriever.pooling == "cls"
    assert cfg.retriever.encoder == "BAAI/bge-large-en-v1.5"


def test_tag_profiles():
    assert TagsConfig().begin_query == "<|begin_of_query|>"
    search_r1 = load_config(RunConfig, None, ["tags.profile=searchr1"]).tags
    assert (search_r1.begin_query, search_r1.end_docs) == ("<search>", "</information>")
    custom = load_config(RunConfig, None, ["tags.begin_query=<q>"]).tags
    assert custom.begin_query == "<q>" and custom.end_query == "<|end_of_query|>"


def test_every_field_is_documented():
    for line in describe(RunConfig):
        assert not line.rstrip().endswith(":"), f"undocumented field: {line}"


def test_a_section_default_instance_keeps_its_values():
    @dataclass
    class WithInstance:
        inner: Inner = doc(Inner(steps=9), "a section whose default is not the class default")

    a, b = load_config(WithInstance), load_config(WithInstance)
    assert a.inner.steps == 9
    a.inner.items.append("z")
    assert b.inner.items == []


@dataclass
class WithNamedSections:
    parts: dict[str, Inner] = doc({}, "named sections")


def test_named_sections_are_validated_like_sections(tmp_path):
    path = write(tmp_path / "n.yaml", {"parts": {"a": {"steps": 4}, "b": {}}})
    cfg = load_config(WithNamedSections, path, ["parts.b.rate=0.25", "parts.c.name=z"])
    assert cfg.parts["a"] == Inner(steps=4)
    assert cfg.parts["b"].rate == 0.25 and cfg.parts["c"].name == "z"
    bad = write(tmp_path / "bad.yaml", {"parts": {"a": {"stepz": 4}}})
    with pytest.raises(ConfigError, match=r"parts\.a\.stepz \(from .*bad\.yaml\): unknown key"):
        load_config(WithNamedSections, bad)
    with pytest.raises(ConfigError, match=r"parts\.a\.steps \(from command line\): expected int"):
        load_config(WithNamedSections, path, ["parts.a.steps=many"])
    with pytest.raises(ConfigError, match="expected a mapping of name: section"):
        load_config(WithNamedSections, write(tmp_path / "s.yaml", {"parts": 3}))
    assert any(line.startswith("parts.<name>.steps (int") for line in describe(WithNamedSections))


def test_parse_cli_help_and_errors_exit_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        parse_cli(RunConfig, ["--help"])
    assert e.value.code == 0
    assert "rollout.temperature (float" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        parse_cli(RunConfig, ["rollout.tempreature=1"])
    assert e.value.code == 2
    assert "rollout.tempreature (from command line): unknown key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        parse_cli(RunConfig, ["--config"])
    assert e.value.code == 2


@dataclass
class Bounded:
    share: float = doc(0.5, "a fraction", gt=0, le=1)
    eps: float = doc(0.2, "below one", ge=0, lt=1)
    weights: dict[str, float] = doc({"a": 1.0}, "finite values")
    limit: float = doc(1.0, "may be infinite", finite=False)
    low: int = doc(1, "a lower end")
    high: int = doc(2, "an upper end")

    def check_fields(self) -> None:
        if self.low > self.high:
            raise FieldError(("low", "high"), f"low {self.low} is above high {self.high}")


@dataclass
class WithBounded:
    part: Bounded = doc(Bounded(), "a bounded section")
    goals: dict[str, float] = doc({}, "named numbers")


@pytest.mark.parametrize(
    "override, message",
    [
        ("part.share=0", "must be > 0, got 0.0"),
        ("part.share=1.5", "must be <= 1, got 1.5"),
        ("part.eps=1", "must be < 1, got 1.0"),
        ("part.eps=-0.1", "must be >= 0, got -0.1"),
        ("part.share=nan", "must be a finite number, got nan"),
        ("part.eps=-inf", "must be a finite number, got -inf"),
    ],
)
def test_bounds_and_finiteness_name_the_key_and_its_source(override, message):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as e:
        load_config(WithBounded, None, [override])
    assert str(e.value) == f"{key} (from command line): {message}"


def test_finite_floats_in_mappings_and_the_opt_out():
    with pytest.raises(ConfigError, match=r"^part\.weights\.b \(from command line\): must be a"):
        load_config(WithBounded, None, ["part.weights={a: 1.0, b: .nan}"])
    assert load_config(WithBounded, None, ["part.limit=inf"]).part.limit == float("inf")
    assert any("(float, default 0.5, > 0, <= 1)" in line for line in describe(WithBounded))


def test_a_rule_across_fields_blames_where_each_value_came_from(tmp_path):
    path = write(tmp_path / "c.yaml", {"part": {"high": 3}})
    with pytest.raises(ConfigError) as e:
        load_config(WithBounded, path, ["part.low=5"])
    assert str(e.value) == (
        f"part.low (from command line), part.high (from {path}): low 5 is above high 3"
    )


def test_a_command_line_key_inside_a_file_section_is_blamed_on_the_command_line(tmp_path):
    path = write(tmp_path / "c.yaml", {"goals": {"rag": 0.1}})
    with pytest.raises(ConfigError, match=r"^goals\.naive \(from command line\): must be a fin"):
        load_config(WithBounded, path, ["goals.naive=nan"])
    nan_file = write(tmp_path / "n.yaml", {"goals": {"rag": float("nan")}})
    with pytest.raises(ConfigError, match=rf"^goals\.rag \(from {nan_file}\): must be a finite"):
        load_config(WithBounded, nan_file)
