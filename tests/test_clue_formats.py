"""CLUE 1.1 readers and writers against hand-written files in each task's released format."""
import json
import zipfile
from pathlib import Path

import pytest

from plmkit.data import DataError
from plmkit.tasks.clue import (TASKS, find_task_dir, get_task, read_c3, read_chid, read_classification,
                               read_cluener, read_cmrc2018, read_split, write_c3, write_chid, write_classification,
                               write_cluener, write_cmrc2018, write_submission_zip)
from plmkit.tasks.ner import NerExample

FIX = Path(__file__).parent / "fixtures" / "clue"


def test_every_task_has_its_official_submission_name():
    assert {s.name: s.submission for s in TASKS.values()} == {
        "afqmc": "afqmc_predict.json", "tnews": "tnews11_predict.json", "iflytek": "iflytek_predict.json",
        "cmnli": "cmnli_predict.json", "ocnli": "ocnli_50k_predict.json", "cluewsc2020": "cluewsc11_predict.json",
        "csl": "csl_predict.json", "cmrc2018": "cmrc2018_predict.json", "c3": "c311_predict.json",
        "chid": "chid11_predict.json", "cluener": "cluener_predict.json"}
    assert get_task("WSC").name == "cluewsc2020" and get_task("ocnli").train == ("train.50k.json",)
    with pytest.raises(KeyError, match="unknown CLUE task 'glue'"):
        get_task("glue")


def test_task_folder_found_directly_or_under_the_clue_root(tmp_path):
    assert find_task_dir(get_task("afqmc"), FIX) == FIX / "afqmc"
    assert find_task_dir(get_task("afqmc"), FIX / "afqmc") == FIX / "afqmc"
    (tmp_path / "wsc").mkdir()
    (tmp_path / "wsc" / "train.json").write_text("{}\n")
    assert find_task_dir(get_task("cluewsc2020"), tmp_path) == tmp_path / "wsc"  # bert4keras' folder name
    with pytest.raises(FileNotFoundError, match="no train.json"):
        find_task_dir(get_task("csl"), tmp_path)


def test_pair_tasks_read_sentence1_sentence2_label():
    train = read_split(get_task("afqmc"), FIX / "afqmc", "train")
    assert (train[0].text, train[0].pair, train[0].label) == ("双十一花呗提额在哪", "里可以提花呗额度", "0")
    test = read_split(get_task("afqmc"), FIX / "afqmc", "test")
    assert [t.id for t in test] == [0, 1, 2] and all(t.label is None for t in test)


def test_tnews_label_desc_keywords_and_iflytek_label_des():
    tnews = read_split(get_task("tnews"), FIX / "tnews", "train")
    assert [t.label for t in tnews] == ["102", "110", "103", "104"]
    assert tnews[0].text == "江疏影甜甜圈自拍，迷之角度竟这么好看，美吸引一切事物" and tnews[0].pair is None
    iflytek = read_split(get_task("iflytek"), FIX / "iflytek", "dev")
    assert [t.label for t in iflytek] == ["0", "1"]
    assert iflytek[1].text == "离线地图，精准定位，步行驾车路线规划"


def test_nli_rows_without_gold_label_are_skipped_in_dev_only():
    spec = get_task("cmnli")
    dev = read_split(spec, FIX / "cmnli", "dev")
    assert [d.label for d in dev] == ["contradiction", "entailment"]  # the "-" row is gone
    ocnli = read_split(get_task("ocnli"), FIX / "ocnli", "dev")
    assert [d.id for d in ocnli] == [0, 2]
    assert len(read_split(get_task("ocnli"), FIX / "ocnli", "train")) == 4  # train.50k.json


def test_wsc_marks_the_referent_and_the_pronoun():
    train = read_split(get_task("cluewsc2020"), FIX / "cluewsc2020", "train")
    assert train[0].text == "这时候放在_床_上枕头旁边的手机响了，我感到奇怪，因为欠费已被停机两个月，现在[它]突然响了。"
    assert train[1].text == "这时候放在床上枕头旁边的_手机_响了，我感到奇怪，因为欠费已被停机两个月，现在[它]突然响了。"
    assert [t.label for t in train] == ["false", "true", "true", "false"]
    assert [t.id for t in train] == [261, 262, 3, 4]  # 'idx' in train files, 'id' in test files


def test_wsc_index_off_by_one_takes_the_nearest_occurrence(tmp_path, caplog):
    row = {"target": {"span2_index": 13, "span1_index": 7, "span1_text": "小红", "span2_text": "她"},
           "idx": 0, "label": "true", "text": "小明把苹果给了小红，因为她饿了。"}
    path = tmp_path / "train.json"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    ex = read_classification(get_task("cluewsc2020"), path)[0]
    assert ex.text == "小明把苹果给了_小红_，因为[她]饿了。"
    assert "span2_index 13 does not hold '她'; using 12" in caplog.text


def test_csl_joins_keywords_as_the_first_text():
    train = read_split(get_task("csl"), FIX / "csl", "train")
    assert train[0].text == "水声学；FFT；波束形成；3维成像声呐"
    assert train[0].pair.startswith("为解决传统均匀FFT波束形成算法") and train[0].label == "1"


def test_cmrc2018_squad_layout():
    train = read_cmrc2018(FIX / "cmrc2018" / "train.json")
    assert [e.qid for e in train] == ["TRAIN_186_QUERY_0", "TRAIN_186_QUERY_1", "TRAIN_54_QUERY_0",
                                      "TRAIN_54_QUERY_1"]
    first = train[0]
    assert first.answers == [("1963年", 48)] and first.context[48:53] == "1963年"
    dev = read_cmrc2018(FIX / "cmrc2018" / "dev.json")
    assert [a for a, _ in dev[0].answers] == ["东汉建安二十年", "东汉建安二十年", "东汉"]
    test = read_cmrc2018(FIX / "cmrc2018" / "test.json")
    assert [e.answers for e in test] == [[], []]


def test_c3_documents_of_dialogue_lines_and_questions():
    train = read_split(get_task("c3"), FIX / "c3", "train")  # d-train.json then m-train.json
    assert len(train) == 4
    assert train[0].passage == "男：你今天晚上有时间吗?我们一起去看电影吧?\n女：你喜欢恐怖片和爱情片，但是我喜欢喜剧片，科幻片一般。所以……"
    assert (train[0].question, train[0].label) == ("女的最喜欢哪种电影?", 2)
    assert train[3].choices == ["吃早饭", "跑步"] and train[3].label == 1
    test = read_c3(FIX / "c3" / "test1.1.json", labelled=False)
    assert [t.id for t in test] == [0, 1, 2] and all(t.label is None for t in test)


def test_c3_answer_must_be_a_choice(tmp_path):
    path = tmp_path / "d-train.json"
    path.write_text(json.dumps([[["男：你好"], [{"question": "?", "choice": ["a", "b"], "answer": "c"}], "1"]]))
    with pytest.raises(DataError, match=r"d-train.json: document 0 question 0: answer 'c' is not one of"):
        read_c3(path)


def test_chid_blanks_split_around_other_blanks():
    blanks = read_chid(FIX / "chid" / "train.json", FIX / "chid" / "train_answer.json")
    assert [b.key for b in blanks] == ["#idiom000378#", "#idiom000379#", "#idiom000380#", "#idiom000381#",
                                       "#idiom000500#", "#idiom000501#"]
    assert [b.group for b in blanks] == [0, 0, 0, 0, 1, 1]
    assert [b.answer for b in blanks] == [0, 1, 6, 7, 0, 2]
    b = blanks[2]  # the second blank of a paragraph with two
    assert b.left == ["在轻舟发展过程之中，是和业内众多企业那样走相似的发展模式，去", "？还是迎难而上，另走一条与众不同之路。诚然，"]
    assert b.right == ["远比随大流更辛苦，更磨难，更充满风险。"]
    assert len(b.candidates) == 10 and b.candidates[6] == "逆水行舟"
    test = read_split(get_task("chid"), FIX / "chid", "test")  # test1.1.json, no answers
    assert [t.answer for t in test] == [None, None, None]


def test_chid_missing_answer_names_the_blank(tmp_path):
    (tmp_path / "a.json").write_text('{"#idiom000378#": 0}')
    with pytest.raises(DataError, match="no answer for #idiom000379#"):
        read_chid(FIX / "chid" / "train.json", tmp_path / "a.json")


def test_cluener_entities_with_inclusive_ends():
    train = read_cluener(FIX / "cluener" / "train.json")
    assert train[0].entities == [(0, 3, "company"), (9, 11, "name")]
    assert train[3].entities == [(1, 11, "movie")]
    test = read_cluener(FIX / "cluener" / "test.json", labelled=False)
    assert [(t.id, t.entities) for t in test] == [(0, []), (1, [])]


def test_cluener_span_that_does_not_read_the_entity_is_an_error(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"text": "叶老桂博士", "label": {"name": {"叶老桂": [[0, 3]]}}}, ensure_ascii=False)
                    + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.json: line 1: name '叶老桂' at \[0, 3\] reads '叶老桂博'"):
        read_cluener(path)


def test_missing_field_names_file_line_and_field(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text('{"sentence1": "a", "label": "0"}\n')
    with pytest.raises(DataError, match=r"dev.json: line 1: no field 'sentence2'"):
        read_classification(get_task("afqmc"), path)
    path.write_text('{"sentence1": "a", "sentence2": "b", "label": "7"}\n')
    with pytest.raises(DataError, match=r"line 1: label '7' is not a afqmc label"):
        read_classification(get_task("afqmc"), path)


# ---- writers: exact bytes of the submission files --------------------------------------------

def test_classification_submission_lines(tmp_path):
    test = read_split(get_task("afqmc"), FIX / "afqmc", "test")
    path = write_classification(tmp_path / "afqmc_predict.json", test, ["1", "0", "1"])
    assert path.read_text(encoding="utf-8") == ('{"id": 0, "label": "1"}\n{"id": 1, "label": "0"}\n'
                                                '{"id": 2, "label": "1"}\n')
    with pytest.raises(ValueError, match="3 examples but 2 labels"):
        write_classification(tmp_path / "x.json", test, ["1", "0"])


def test_c3_submission_lines_carry_the_choice_index(tmp_path):
    test = read_c3(FIX / "c3" / "test1.1.json", labelled=False)
    path = write_c3(tmp_path / "c311_predict.json", test, [0, 3, 1])
    assert path.read_text() == '{"id": 0, "label": 0}\n{"id": 1, "label": 3}\n{"id": 2, "label": 1}\n'


def test_chid_and_cmrc_submissions_are_one_object(tmp_path):
    write_chid(tmp_path / "chid11_predict.json", {"#idiom002000#": 2, "#idiom002001#": 6})
    assert json.loads((tmp_path / "chid11_predict.json").read_text()) == {"#idiom002000#": 2, "#idiom002001#": 6}
    write_cmrc2018(tmp_path / "cmrc2018_predict.json", {"TEST_0_QUERY_0": "嘉峪关"})
    text = (tmp_path / "cmrc2018_predict.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"TEST_0_QUERY_0": "嘉峪关"} and "嘉峪关" in text  # not \u-escaped


def test_cluener_submission_groups_entities_by_type_and_text(tmp_path):
    examples = [NerExample(7, "李四在上海，李四在北京"), NerExample(8, "无")]
    path = write_cluener(tmp_path / "cluener_predict.json", examples,
                         [[(0, 1, "name"), (3, 4, "address"), (6, 7, "name")], []])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 7, "label": {"address": {"上海": [[3, 4]]}, "name": {"李四": [[0, 1], [6, 7]]}}},
        {"id": 8, "label": {}}]
    assert "李四" in lines[0]


def test_submission_zip_holds_the_files_at_its_root(tmp_path):
    a = write_chid(tmp_path / "sub" / "chid11_predict.json", {"#idiom1#": 0})
    b = write_cmrc2018(tmp_path / "sub" / "cmrc2018_predict.json", {"q": "a"})
    z = write_submission_zip(tmp_path / "clue.zip", [a, b])
    with zipfile.ZipFile(z) as f:
        assert sorted(f.namelist()) == ["chid11_predict.json", "cmrc2018_predict.json"]
        assert json.loads(f.read("chid11_predict.json")) == {"#idiom1#": 0}


def test_wsc_pronoun_before_its_referent(tmp_path):
    row = {"target": {"span2_index": 0, "span1_index": 7, "span1_text": "猫", "span2_text": "它"},
           "id": 0, "text": "它很可爱，这只猫是我的。"}
    path = tmp_path / "test.json"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    ex = read_classification(get_task("cluewsc2020"), path, labelled=False)[0]
    assert (ex.id, ex.text, ex.label) == (0, "[它]很可爱，这只_猫_是我的。", None)


def test_whole_file_json_replaces_lone_surrogates(tmp_path, caplog):
    """C3 / CHID / CMRC are whole-file JSON: half an emoji becomes U+FFFD as in JSONL rows, with a warning."""
    import logging

    from plmkit.tasks.clue import read_c3

    path = tmp_path / "d-train.json"
    path.write_text('[[["\\u7537\\ud83d\\u5973"], [{"question": "q", "choice": ["a", "b"], "answer": "a"}], "x"]]',
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        examples = read_c3(path)
    assert "\ufffd" in examples[0].passage and "\ud83d" not in examples[0].passage
    assert "replaced 1 lone" in caplog.text
