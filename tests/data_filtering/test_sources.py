"""QARecord round trip and the question loaders on real and generated files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_filtering.records import QARecord, read_records, write_records
from data_filtering.sources import SourceError, detect_format, load_questions, read_source
from miniwiki.build import build
from miniwiki.presets import tiny_config


@pytest.fixture(scope="module")
def small_built_dir(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("miniwiki"))
    build(cfg)
    return Path(cfg.out_dir)


def test_qarecord_jsonl_round_trip(tmp_path):
    records = [
        QARecord("1", "Who?", ["Ann", "Anne"], "hotpotqa_dev", {"type": "bridge", "n": [1, 2]}),
        QARecord("2", "Wann? «ü»", ["1987"], "2wiki_dev", {}),
    ]
    path = write_records(tmp_path / "r.jsonl", records)
    assert read_records(path) == records
    assert load_questions(path) == records  # our own format is auto-detected too


def test_read_records_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(QARecord("1", "q", ["a"], "s").to_dict())
    path.write_text(good + "\n" + '{"id": "2", "question": "q"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2.*missing"):
        read_records(path)
    path.write_text(good + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_records(path)


EXPECTED_LINES = {
    "eval_set/hotpotqa_500.jsonl": 500,
    "eval_set/2wiki_500.jsonl": 500,
    "eval_set/musique_500.jsonl": 500,
    "eval_set/bamboogle.jsonl": 125,
    "training_set/stage_1.jsonl": 350,
    "training_set/stage_2.jsonl": 8148,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LINES))
def test_loads_the_released_r1searcher_files(r1searcher_data, name):
    path = r1searcher_data / name
    records = load_questions(path)
    assert len(records) == EXPECTED_LINES[name]
    first = json.loads(path.read_text().splitlines()[0])
    assert records[0].id == str(first["idx"])
    assert records[0].question == first["question"]
    assert records[0].answers == [first["answer"]]
    assert records[0].source == path.stem
    assert all(r.meta["format"] == "r1searcher" and r.answers[0].strip() for r in records)
    if name.endswith("stage_1.jsonl"):
        assert len(records[0].meta["pred_anses"]) == 10  # labels travel with the record


def test_the_kilt_corpus_sample_is_not_a_question_file(r1searcher_data):
    path = r1searcher_data / "corpus_samples" / "filtered_kilt_sample_100.jsonl"
    with pytest.raises(SourceError, match=r"filtered_kilt_sample_100\.jsonl:1: cannot tell"):
        load_questions(path)


@pytest.mark.parametrize("dataset", ["hotpotqa", "2wiki"])
def test_loads_generated_records_as_json_list_and_as_jsonl(small_built_dir, tmp_path, dataset):
    src = small_built_dir / "task" / f"{dataset}_dev.json"
    rows = json.loads(src.read_text())
    from_list = load_questions(src)
    assert [r.id for r in from_list] == [row["_id"] for row in rows]
    assert [r.answers for r in from_list] == [[row["answer"]] for row in rows]
    assert all(r.meta["format"] == dataset and r.meta["type"] == row["type"]
               for r, row in zip(from_list, rows, strict=True))  # fmt: skip
    assert all("context" not in r.meta and r.meta["supporting_facts"] for r in from_list)
    if dataset == "2wiki":
        assert all(r.meta["evidences"] for r in from_list)
    jsonl = tmp_path / f"{dataset}_dev.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert load_questions(jsonl) == from_list


def test_detect_format_from_keys():
    assert detect_format({"idx": 1, "question": "q", "answer": "a"}, "x") == "r1searcher"
    assert (
        detect_format({"_id": "1", "question": "q", "answer": "a", "context": []}, "x")
        == "hotpotqa"
    )
    assert (
        detect_format({"_id": "1", "question": "q", "answer": "a", "evidences": []}, "x") == "2wiki"
    )
    with pytest.raises(SourceError, match="where: cannot tell"):
        detect_format({"q": 1}, "where")


def test_bad_records_fail_with_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"idx": 1, "question": "q", "answer": "a"}\n{"idx": 2, "question": "", "answer": "a"}\n'
    )
    with pytest.raises(SourceError, match=r"q\.jsonl:2: `question` must be a non-empty string"):
        load_questions(path)
    path.write_text(
        '{"idx": 1, "question": "q", "answer": "a"}\n{"idx": 1, "question": "r", "answer": "b"}\n'
    )
    with pytest.raises(
        SourceError, match=r"q\.jsonl:2: duplicate id '1' \(first at .*q\.jsonl:1\)"
    ):
        load_questions(path)
    path.write_text('{"idx": 1, "question": "q", "answer": "a"}\n\n{"idx": 2,\n')
    with pytest.raises(SourceError, match=r"q\.jsonl:3: not valid JSON"):
        load_questions(path)
    lst = tmp_path / "list.json"
    lst.write_text('[{"_id": "a", "question": "q", "answer": "x"}, {"_id": "b", "question": "q"}]')
    with pytest.raises(SourceError, match=r"list\.json \(record 1\): `answer`"):
        load_questions(lst)
    with pytest.raises(SourceError, match="`_id` missing"):
        load_questions(_r1(tmp_path), fmt="2wiki")
    with pytest.raises(SourceError, match="unknown question format"):
        load_questions(path, fmt="squad")
    with pytest.raises(SourceError, match="not found"):
        load_questions(tmp_path / "missing.jsonl")


def _r1(tmp_path):
    path = tmp_path / "r1.jsonl"
    path.write_text('{"idx": 1, "question": "q", "answer": "a"}\n')
    return path


def test_flashrag_rows_load(tmp_path):
    path = tmp_path / "nq.jsonl"
    rows = [
        {"id": "test_0", "question": "who wrote hamlet", "golden_answers": ["Shakespeare", "W. S."],
         "metadata": {"split": "test"}},
        {"id": "test_1", "question": "capital of france", "golden_answers": ["Paris"]},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_questions(path)
    assert [r.answers for r in records] == [["Shakespeare", "W. S."], ["Paris"]]
    assert records[0].meta == {"format": "flashrag", "metadata": {"split": "test"}}
    assert records[1].id == "test_1"


def test_read_source_skips_bad_rows_and_counts_them(tmp_path):
    path = tmp_path / "q.jsonl"
    lines = [
        '{"idx": 1, "question": "q1", "answer": "a"}',
        '{"idx": 2, "question": "", "answer": "a"}',
        "{torn",
        '{"idx": 1, "question": "again", "answer": "b"}',
        '{"idx": 3, "question": "q3", "answer": ["", "x"]}',
        '["not", "an", "object"]',
        '{"question": "no id", "answer": "c"}',
        '{"idx": 4, "question": "q4", "answer": "d"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    loaded = read_source(path, name="mine")
    assert [r.id for r in loaded.records] == ["1", "4"]
    assert all(r.source == "mine" for r in loaded.records)
    assert loaded.format == "r1searcher" and loaded.rows == 8
    assert loaded.skip_counts() == {
        "bad_question": 1,
        "not_json": 1,
        "duplicate_id": 1,
        "bad_answer": 1,
        "not_object": 1,
        "missing_id": 1,
    }
    assert loaded.skipped[0].where == f"{path}:2"
    with pytest.raises(SourceError, match="not found"):
        read_source(tmp_path / "missing.json")
    with pytest.raises(SourceError, match="cannot tell"):
        read_source(write_flashrag_corpus(tmp_path / "corpus.jsonl"))


def write_flashrag_corpus(path):
    path.write_text('{"id": "d0", "contents": "Title\\ntext"}\n')
    return path


@pytest.mark.parametrize("name", ["stage_1.jsonl", "stage_2.jsonl"])
def test_the_released_stage_files_load_as_a_source(r1searcher_data, name):
    loaded = read_source(r1searcher_data / "training_set" / name, name="r1")
    assert len(loaded.records) == EXPECTED_LINES[f"training_set/{name}"]
    assert loaded.skipped == [] and loaded.format == "r1searcher"


def test_hf_datasets_folder_and_data_files(tmp_path):
    import datasets

    rows = {
        "id": ["5a8b", "5a8c", "5a8d"],
        "question": ["Who?", "Where?", ""],
        "answer": ["Ann", "Oslo", "x"],
        "type": ["bridge", "comparison", "bridge"],
        "level": ["hard", "easy", "medium"],
    }
    folder = tmp_path / "hotpot_hf"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(folder))
    loaded = read_source(folder, "hf", name="hotpotqa", split="train")
    assert [(r.id, r.answers, r.meta["type"]) for r in loaded.records] == [
        ("5a8b", ["Ann"], "bridge"),
        ("5a8c", ["Oslo"], "comparison"),
    ]
    assert loaded.format == "hf/hotpotqa" and loaded.skip_counts() == {"bad_question": 1}
    files = tmp_path / "flashrag_hf"
    files.mkdir()
    (files / "train.jsonl").write_text(
        json.dumps({"id": "0", "question": "q", "golden_answers": ["g"]}) + "\n"
    )
    loaded = read_source(files, "hf", split="train")
    assert [(r.id, r.answers) for r in loaded.records] == [("0", ["g"])]
    with pytest.raises(SourceError, match=r"hf dataset .*\[test\]"):
        read_source(folder, "hf", split="test")


def test_the_config_offers_exactly_the_loader_formats():
    import typing

    from data_filtering.config import SOURCE_FORMATS, SourceConfig
    from data_filtering.sources import FORMATS
    from recipe.schema import DataConfig

    hints = typing.get_type_hints(DataConfig)
    assert typing.get_args(hints["source_format"]) == ("auto", *FORMATS)
    assert typing.get_args(typing.get_type_hints(SourceConfig)["format"]) == SOURCE_FORMATS


LATIN1_ROW = '{"idx": 2, "question": "Who painted Guernica?", "answer": "Pablo Picasso"}'


def test_a_line_that_is_not_utf8_is_named_strictly_and_skipped_when_filtering(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = ['{"idx": 1, "question": "q1", "answer": "a"}', LATIN1_ROW.replace("a", "\xe1", 1)]
    path.write_bytes("\n".join(rows[:1]).encode() + b"\n" + rows[1].encode("latin-1") + b"\n")
    with pytest.raises(SourceError, match=r"q\.jsonl:2: not UTF-8 text \(byte 0xe1\); save"):
        load_questions(path)
    loaded = read_source(path)
    assert [r.id for r in loaded.records] == ["1"]
    assert loaded.skip_counts() == {"not_utf8": 1}
    assert loaded.skipped[0].where == f"{path}:2"


def test_a_json_list_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "q.json"
    text = '[\n  {"_id": "a", "question": "q", "answer": "x"},\n  ' + LATIN1_ROW + "\n]\n"
    path.write_bytes(text.replace("Picasso", "Pic\xe0sso").encode("latin-1"))
    for read in (load_questions, read_source):
        with pytest.raises(SourceError, match=r"q\.json:3: not UTF-8 text \(byte 0xe0\)"):
            read(path)
