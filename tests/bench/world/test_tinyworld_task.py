"""Tests for the tiny world's task (evals.datasets.tinyworld_task) and its character tokenizer
(bench.world.tiny.tokenizer)."""

from __future__ import annotations

import itertools
import random
import string

import pytest
from transformers import AutoTokenizer

from bench.world.tiny.tokenizer import ALPHABET, EOS, PAD, UNK, build_char_tokenizer
from evals.datasets.tinyworld_task import (
    CRITERIA,
    FEATURES,
    SPLITS,
    STYLES,
    Problem,
    Style,
    criterion_name,
    detect_style,
    make_problem,
    parse_criterion,
    render_solution,
    sample_problems,
    score_response,
    split_of,
)

ALL_STYLES = [Style(c, s, r) for c, s, r in itertools.product((False, True), repeat=3)]

BASE_347_285 = "7+5=12,4+8+1=13,3+2+1=6;\\boxed{632}"
TARGET_347_285 = "7+5=2c1 4+8+1=3c1 3+2+1=6c0=632;\\boxed{632}"


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


# --------------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------------
def test_vocabulary_layout(tok):
    assert ALPHABET == [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    assert len(ALPHABET) == 95
    assert len(tok) == 98
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == (PAD, EOS, UNK)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids(["0", " "]) == [3 + ALPHABET.index("0"), 3 + ALPHABET.index(" ")]
    assert tok.padding_side == "left"


def _round_trip(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text), text  # one token per character
    assert tok.decode(ids) == text
    return ids


@pytest.mark.parametrize("a,b", [(347, 285), (999, 1), (5, 7), (12345, 678)])
@pytest.mark.parametrize("style", [Style.base(), Style.target()])
def test_round_trip_solutions_char_by_char(tok, a, b, style):
    text = f"{a}+{b}=" + render_solution(a, b, style)
    ids = _round_trip(tok, text)
    assert ids == [3 + ALPHABET.index(c) for c in text]
    for c in set(text):
        assert _round_trip(tok, c) == [3 + ALPHABET.index(c)]


def test_round_trip_every_printable_character(tok):
    for c in ALPHABET:
        assert _round_trip(tok, c) == [3 + ALPHABET.index(c)]
    _round_trip(tok, "".join(ALPHABET))
    # Spaces before punctuation survive (no clean_up_tokenization_spaces), as do leading/trailing/double spaces.
    for text in ["a ,b", "x . y", "it 's", "a  b", " lead", "trail ", "n't ?!"]:
        _round_trip(tok, text)


def test_round_trip_random_printable_text(tok):
    rng = random.Random(0)
    for _ in range(50):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 40)))
        _round_trip(tok, text)


def test_saved_and_reloaded_tokenizer_is_identical(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.padding_side == "left"
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    texts = ["347+285=", TARGET_347_285, "".join(ALPHABET), "a ,b <eos>"]
    for text in texts:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert loaded.decode(loaded(text)["input_ids"]) == text
    batch = loaded(["1+2=", "10+20="], padding=True)
    assert batch["input_ids"][0][:2] == [0, 0]  # left-padded with <pad> = 0
    assert batch["attention_mask"] == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert batch["input_ids"] == tok(["1+2=", "10+20="], padding=True)["input_ids"]


# --------------------------------------------------------------------------------------------------------
# Problems and splits
# --------------------------------------------------------------------------------------------------------
def test_make_problem_fields():
    assert make_problem(347, 285) == Problem(uid="347+285", prompt="347+285=", answer="632", a=347, b=285)


def test_split_of_pinned_values():
    assert split_of(347, 285) == "train"
    assert split_of(285, 347) == "train"  # the split hashes the unordered pair: commuted problems stay together
    for a, b in [(123, 456), (999, 1), (396, 599), (717, 802)]:
        assert split_of(a, b) == split_of(b, a)
    assert split_of(999, 1) == "train"
    assert split_of(396, 599) == "test"


def test_sample_problems_deterministic_and_seed_dependent():
    first = sample_problems("train", 20, seed=0)
    assert first == sample_problems("train", 20, seed=0)
    assert [p.uid for p in first[:3]] == ["548+681", "174+663", "340+418"]
    assert [p.uid for p in sample_problems("test", 3, seed=0)] == ["396+599", "717+802", "495+444"]
    assert [p.uid for p in sample_problems("validation", 3, seed=0)] == ["770+210", "399+222", "698+474"]
    other = sample_problems("train", 20, seed=1)
    assert [p.uid for p in other] != [p.uid for p in first]
    assert not {p.uid for p in other} & {p.uid for p in first[:3]}


@pytest.mark.parametrize("split", SPLITS)
def test_sample_problems_membership_and_shape(split):
    probs = sample_problems(split, 60, seed=7)
    assert len(probs) == 60
    assert len({(p.a, p.b) for p in probs}) == 60  # distinct
    for p in probs:
        assert split_of(p.a, p.b) == split
        assert 100 <= p.a <= 999 and 100 <= p.b <= 999
        assert p == make_problem(p.a, p.b)
    two = sample_problems(split, 30, seed=7, digits=2)
    assert all(10 <= p.a <= 99 and 10 <= p.b <= 99 and split_of(p.a, p.b) == split for p in two)


def test_splits_never_overlap():
    pairs = {}
    for split in SPLITS:
        pairs[split] = set()
        for seed in range(3):
            pairs[split] |= {(p.a, p.b) for p in sample_problems(split, 100 if split == "train" else 40, seed)}
    assert not pairs["train"] & pairs["validation"]
    assert not pairs["train"] & pairs["test"]
    assert not pairs["validation"] & pairs["test"]


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="unknown split"):
        sample_problems("dev", 1, 0)


# --------------------------------------------------------------------------------------------------------
# Rendering and style detection
# --------------------------------------------------------------------------------------------------------
def test_render_docstring_examples():
    assert render_solution(347, 285, Style.base()) == BASE_347_285
    assert render_solution(347, 285, Style.target()) == TARGET_347_285


def test_render_each_feature_alone():
    assert render_solution(347, 285, Style(True, False, False)) == "7+5=2c1,4+8+1=3c1,3+2+1=6c0;\\boxed{632}"
    assert render_solution(347, 285, Style(False, True, False)) == "7+5=12 4+8+1=13 3+2+1=6;\\boxed{632}"
    assert render_solution(347, 285, Style(False, False, True)) == "7+5=12,4+8+1=13,3+2+1=6=632;\\boxed{632}"


def test_render_final_carry_and_unequal_lengths():
    assert render_solution(999, 1, Style.base()) == "9+1=10,9+0+1=10,9+0+1=10;\\boxed{1000}"
    assert render_solution(999, 1, Style.target()) == "9+1=0c1 9+0+1=0c1 9+0+1=0c1=1000;\\boxed{1000}"
    assert render_solution(1, 999, Style.base()) == "1+9=10,0+9+1=10,0+9+1=10;\\boxed{1000}"
    assert render_solution(5, 7, Style.target()) == "5+7=2c1=12;\\boxed{12}"
    assert render_solution(0, 0, Style.base()) == "0+0=0;\\boxed{0}"


@pytest.mark.parametrize("style", ALL_STYLES)
def test_detect_style_recovers_every_combination(style):
    assert detect_style(render_solution(347, 285, style)) == style
    assert detect_style(render_solution(999, 1, style)) == style


def test_detect_style_rejects_inconsistent_responses():
    assert detect_style("7+5=12 4+8+1=13,3+2+1=6;\\boxed{632}") is None  # mixed separators
    assert detect_style("7+5=2c1 4+8+1=13 3+2+1=6c0=632;\\boxed{632}") is None  # mixed carry notation
    assert detect_style("\\boxed{632}") is None
    assert detect_style(TARGET_347_285 + " ") is None
    assert detect_style("7+5=2c1 4+8+1=3c1 3+2+1=6c0=632;\\boxed{632+0}") is None
    assert detect_style("") is None


# --------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------
P = make_problem(347, 285)


@pytest.mark.parametrize(
    "response,answer,in_style",
    [
        (TARGET_347_285, 1.0, 1.0),
        (BASE_347_285, 1.0, 0.0),
        (render_solution(347, 285, Style(True, True, False)), 1.0, 0.0),  # missing only the restatement
        ("\\boxed{632}", 1.0, 0.0),
        (render_solution(347, 286, Style.target()), 0.0, 0.0),  # wrong sum, target style
        (render_solution(347, 286, Style.base()), 0.0, 0.0),
        ("7+5=2c1 4+8+1=3c1 3+2+1=6c0=632;\\boxed{632+0}", 0.0, 0.0),  # unevaluated expression
        ("7+5=12,4+8+1=13,3+2+1=6;\\boxed{632+0}", 0.0, 0.0),
        ("7+5=2c1 4+8+1=3c1 3+2+1=6c0=632;", 0.0, 0.0),  # no box
        ("\\boxed{632.0}", 1.0, 0.0),  # strict numeric equality accepts 632.0
        ("\\boxed{631}\\boxed{632}", 1.0, 0.0),  # the last box counts
    ],
)
def test_score_response(response, answer, in_style):
    assert score_response(P, response, "answer") == answer
    assert score_response(P, response, "answer_in_style") == in_style
    assert score_response(P, response) == in_style  # default criterion


def test_score_response_unknown_criterion():
    assert CRITERIA == ("answer", "answer_in_style")
    with pytest.raises(ValueError, match="unknown criterion"):
        score_response(P, TARGET_347_285, "style")


# --------------------------------------------------------------------------------------------------------
# Target styles and criterion strings (the flip world's target changes one feature)
# --------------------------------------------------------------------------------------------------------
CARRY_347_285 = "7+5=2c1,4+8+1=3c1,3+2+1=6c0;\\boxed{632}"


def test_style_of_features_and_names():
    assert FEATURES == ("carry", "sep", "restate")
    assert Style.of(["carry"]) == Style(True, False, False)
    assert Style.of(["restate", "carry"]) == Style(True, False, True)
    assert Style.of(FEATURES) == Style.target() and Style.of([]) == Style.base()
    assert Style.target().name == "carry+sep+restate" and Style.base().name == "base"
    assert Style(False, True, True).features == ("sep", "restate")
    assert set(STYLES) == set(ALL_STYLES) and len({s.name for s in STYLES}) == 8
    for bad in (["bold"], ["carry", "carry"]):
        with pytest.raises(ValueError, match="name each of"):
            Style.of(bad)


def test_criterion_name_and_parse():
    assert criterion_name("answer_in_style") == "answer_in_style"  # default target: today's name
    assert criterion_name("answer_in_style", ["restate", "sep", "carry"]) == "answer_in_style"
    assert criterion_name("answer_in_style", ["carry"]) == "answer_in_style:carry"
    assert criterion_name("answer_in_style", ["sep", "carry"]) == "answer_in_style:carry+sep"
    assert criterion_name("answer", ["carry"]) == "answer"
    with pytest.raises(ValueError, match="at least one feature"):
        criterion_name("answer_in_style", [])
    with pytest.raises(ValueError, match="unknown criterion"):
        criterion_name("answer_in_style:carry", ["carry"])
    assert parse_criterion("answer") == ("answer", None)
    assert parse_criterion("answer_in_style") == ("answer_in_style", Style.target())
    assert parse_criterion("answer_in_style:carry") == ("answer_in_style", Style(True, False, False))
    assert parse_criterion("answer_in_style:sep+restate") == ("answer_in_style", Style(False, True, True))
    for bad in ("answer:carry", "answer_in_style:", "answer_in_style:bold", "answer_in_style:carry+carry", "x"):
        with pytest.raises(ValueError, match="unknown criterion"):
            parse_criterion(bad)


@pytest.mark.parametrize(
    "response,carry_only,full_target",
    [
        (CARRY_347_285, 1.0, 0.0),  # the flip world's teacher style: one feature changed
        (TARGET_347_285, 0.0, 1.0),  # three features changed: not the flip teacher's style
        (BASE_347_285, 0.0, 0.0),  # the old style, right sum
        (render_solution(347, 286, Style(True, False, False)), 0.0, 0.0),  # carry style, wrong sum
        (render_solution(347, 285, Style(True, True, False)), 0.0, 0.0),  # carry + space separators
        ("7+5=2c1,4+8+1=3c1,3+2+1=6c1;\\boxed{632}", 0.0, 0.0),  # a wrong step, right box
    ],
)
def test_one_feature_target_scores_exactly_its_style(response, carry_only, full_target):
    assert render_solution(347, 285, Style.of(["carry"])) == CARRY_347_285
    assert score_response(P, response, "answer_in_style:carry") == carry_only
    assert score_response(P, response, "answer_in_style") == full_target
    assert score_response(P, response, "answer_in_style:carry+sep+restate") == full_target
