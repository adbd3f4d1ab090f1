"""Each transform on small hand-made cases.

Expected values are derived from ActivityWatch's documented behaviour; each
case says which AW behaviour it pins (aw-core = aw_transform in Python, the
reference; aw-server-rust where it is the one we follow). Times are seconds
after T0 (see helpers.spans).
"""

from __future__ import annotations

import pytest

from worklens.query2 import transforms as t
from worklens.query2.events import datetime_to_us

from .helpers import T0, at, ev, spans

# --- flood -------------------------------------------------------------------------------


def test_flood_forward_fills_gap_from_longer_earlier_event() -> None:
    # aw-core test_flood_forward: gap of exactly pulsetime (5 s) is filled (<=),
    # the longer event (the first) is stretched to meet the second.
    out = t.flood([ev(0, 10, {"a": 0}), ev(15, 5, {"b": 1})])
    assert spans(out) == [(0, 15), (15, 20)]


def test_flood_forward_merge_same_data() -> None:
    # aw-core test_flood_forward_merge: equal data -> one event over both.
    out = t.flood([ev(0, 10), ev(15, 5)])
    assert spans(out) == [(0, 20)]


def test_flood_backward_fills_gap_from_longer_later_event() -> None:
    # aw-core test_flood_backward: the later event is longer, so it is extended back.
    out = t.flood([ev(0, 5, {"a": 0}), ev(10, 10, {"b": 1})])
    assert spans(out) == [(0, 5), (5, 20)]


def test_flood_backward_merge_keeps_the_longer_events_identity() -> None:
    # aw-core test_flood_backward_merge: e2 swallows e1 (e1 emptied and dropped).
    out = t.flood([ev(0, 5, id=1), ev(10, 10, id=2)])
    assert spans(out) == [(0, 20)]
    assert out[0].id == 2


def test_flood_equal_durations_flood_from_the_first() -> None:
    # aw-core: "if e1.duration >= e2.duration" -> ties extend the earlier event.
    out = t.flood([ev(0, 5, {"x": 1}), ev(7, 5, {"y": 1})])
    assert spans(out) == [(0, 7), (7, 12)]


def test_flood_negative_gap_same_data_merges() -> None:
    # aw-core test_flood_negative_gap_same_data.
    out = t.flood([ev(0, 100, {"a": 0}), ev(0, 5, {"a": 0})])
    assert spans(out) == [(0, 100)]


def test_flood_negative_gap_differing_data_left_alone() -> None:
    # aw-core test_flood_negative_gap_differing_data: an overlap >= 0.1 s with
    # different data cannot be resolved safely; the events come back unchanged.
    events = [ev(0, 5, {"a": 0}), ev(0, 100, {"b": 1})]
    assert t.flood(events) == events


def test_flood_small_negative_gap_differing_data_is_trimmed() -> None:
    # aw-core test_flood_negative_small_gap_differing_data: overlap of 0.01 s,
    # equal durations -> the first is cut back to where the second starts.
    out = t.flood([ev(0, 100, {"b": 1}), ev(99.99, 100, {"a": 0})])
    assert spans(out) == [(0, 99.99), (99.99, 199.99)]
    assert sum(e.duration for e in out) == pytest.approx(199.99)


def test_flood_gap_beyond_pulsetime_untouched_and_custom_pulsetime() -> None:
    # aw-core: only gaps <= pulsetime are filled; the parameter sets it.
    events = [ev(0, 10, {"a": 1}), ev(16, 4, {"b": 1})]
    assert spans(t.flood(events)) == [(0, 10), (16, 20)]
    assert spans(t.flood(events, pulsetime=6)) == [(0, 16), (16, 20)]


def test_flood_zero_gap_and_zero_duration() -> None:
    # aw-core: "if not gap: continue" (touching events are not joined even with
    # equal data) and zero-duration events are dropped at the end.
    out = t.flood([ev(0, 5, {"a": 1}), ev(5, 5, {"a": 1}), ev(30, 0, {"a": 1})])
    assert spans(out) == [(0, 5), (5, 10)]


def test_flood_sorts_and_keeps_unchanged_events() -> None:
    # aw-core sorts by timestamp first; we also hand back untouched events as is.
    a, b = ev(100, 5, {"a": 1}), ev(0, 5, {"b": 1})
    out = t.flood([a, b])
    assert out == [b, a]
    assert out[0] is b and out[1] is a


# --- filters on data ---------------------------------------------------------------------


def test_filter_and_exclude_keyvals() -> None:
    # aw-core test_filter_keyval: 2 included, 1 excluded.
    events = [ev(0, 1, {"label": v}) for v in ("aa", "bb", "cc")]
    assert [e.data["label"] for e in t.filter_keyvals(events, "label", ["aa", "cc"])] == [
        "aa", "cc"]
    assert [e.data["label"] for e in t.exclude_keyvals(events, "label", ["aa", "cc"])] == ["bb"]


def test_filter_keyvals_missing_key_and_json_equality() -> None:
    # aw-core: "key in event.data and event.data[key] in vals"; exclude keeps
    # events without the key. aw-webui filters browser events with [true]:
    # JSON equality, so true does not match 1 (Python's True == 1 would).
    events = [ev(0, 1, {"audible": True}), ev(1, 1, {"audible": 1}), ev(2, 1, {})]
    assert t.filter_keyvals(events, "audible", [True]) == [events[0]]
    assert t.exclude_keyvals(events, "audible", [True]) == events[1:]
    cats = [ev(0, 1, {"$category": ["Work", "Dev"]}), ev(1, 1, {"$category": ["Work"]})]
    assert t.filter_keyvals(cats, "$category", [["Work"]]) == [cats[1]]


def test_filter_keyvals_regex() -> None:
    # aw-core test_filter_keyval_regex / _keyerror: search anywhere, events
    # without the key are dropped; non-string values never match.
    events = [ev(0, 1, {"label": "aa"}), ev(1, 1, {}), ev(2, 1, {"label": "cc"}),
              ev(3, 1, {"label": 5})]
    assert t.filter_keyvals_regex(events, "label", "aa|cc") == [events[0], events[2]]
    assert t.filter_keyvals_regex(events, "label", "^c") == [events[2]]


# --- filter_period_intersect -------------------------------------------------------------


def test_filter_period_intersect_offset() -> None:
    # aw-core test_filter_period_intersect, case 1: 1 h filtered by 1 h at +30 min.
    out = t.filter_period_intersect([ev(0, 3600)], [ev(1800, 3600)])
    assert spans(out) == [(1800, 3600)]


def test_filter_period_intersect_two_events_one_filter_and_reverse() -> None:
    # aw-core cases 2 and 3: two 30 min events with a 15 min gap, one 45 min
    # filter across both -> two 15 min pieces; and the same with roles swapped.
    a = [ev(0, 1800, {"x": 1}), ev(2700, 1800, {"x": 2})]
    f = [ev(900, 2700)]
    assert spans(t.filter_period_intersect(a, f)) == [(900, 1800), (2700, 3600)]
    assert spans(t.filter_period_intersect(f, a)) == [(900, 1800), (2700, 3600)]


def test_filter_period_intersect_docstring_picture() -> None:
    # aw-core's docstring:   events1 |   =======        ======== |
    #                        events2 | ------  ---  ---   ----   |
    #                        result  |   ====  =          ====   |
    events = [ev(2, 7, {"k": 1}), ev(17, 8, {"k": 2})]
    filt = [ev(0, 6), ev(8, 3), ev(13, 3), ev(19, 4)]
    out = t.filter_period_intersect(events, filt)
    assert spans(out) == [(2, 6), (8, 9), (19, 23)]
    assert [e.data["k"] for e in out] == [1, 1, 2]


def test_filter_period_intersect_overlapping_filters_count_once() -> None:
    # Our decision (see module doc): the filter is the union of its events, so
    # overlapping not-afk events do not duplicate time (aw-core would emit
    # [0,5] and [3,8], counting [3,5] twice).
    out = t.filter_period_intersect([ev(0, 10, id=7)], [ev(0, 5), ev(3, 5)])
    assert spans(out) == [(0, 8)]
    assert out[0].id == 7


def test_filter_period_intersect_zero_duration_and_keep_identity() -> None:
    # AW's Timeslot.intersection needs start < end: zero-length events vanish.
    inside = ev(1, 2, {"k": 1})
    out = t.filter_period_intersect([ev(0.5, 0), inside], [ev(0, 10)])
    assert out == [inside] and out[0] is inside


# --- period_union / union_no_overlap -----------------------------------------------------


def test_period_union_cases() -> None:
    # aw-core test_period_union: overlapping -> 1, adjacent -> 1, apart -> 2;
    # data is cleared (docstring warning).
    assert spans(t.period_union([ev(0, 10, {"a": 1})], [ev(9, 10)])) == [(0, 19)]
    assert spans(t.period_union([ev(0, 10)], [ev(10, 10)])) == [(0, 20)]
    out = t.period_union([ev(0, 10, {"a": 1})], [ev(11, 10, {"b": 2})])
    assert spans(out) == [(0, 10), (11, 21)]
    assert all(dict(e.data) == {} and e.id is None for e in out)


def test_union_no_overlap_aw_cases() -> None:
    # aw-core test_union_no_overlap: 3 x 1 h at 0,2,4 h and 3 x 1 h at 0.5,2.5,4.5 h
    # -> 4.5 h either way round; one 5 h event under 3 x 1 h -> 5 h.
    h = 3600
    e1 = [ev(2 * i * h, h, {"test": 1}) for i in range(3)]
    e2 = [ev((2 * i + 0.5) * h, h, {"test": 2}) for i in range(3)]
    for a, b in ((e1, e2), (e2, e1)):
        out = t.union_no_overlap(a, b)
        assert sum(e.duration for e in out) == 4.5 * h
        assert out == sorted(out, key=lambda e: e.start_us)
    out = t.union_no_overlap(e1, e2)
    assert spans(out) == [(0, h), (h, 1.5 * h), (2 * h, 3 * h), (3 * h, 3.5 * h),
                          (4 * h, 5 * h), (5 * h, 5.5 * h)]
    out = t.union_no_overlap(e1, [ev(0, 5 * h, {"test": 2})])
    assert sum(e.duration for e in out) == 5 * h
    assert [e.data["test"] for e in out] == [1, 2, 1, 2, 1]


def test_union_no_overlap_first_list_wins_and_pieces_keep_id() -> None:
    # aw-core docstring: "the first eventlist will have precedence".
    out = t.union_no_overlap([ev(2, 2, {"p": 1})], [ev(0, 10, {"p": 2}, id=9)])
    assert spans(out) == [(0, 2), (2, 4), (4, 10)]
    assert [e.id for e in out] == [9, None, 9]


# --- merge / chunk -----------------------------------------------------------------------


def test_merge_events_by_keys_one_key() -> None:
    # aw-core test_merge_events_by_keys_1: 10 x "a" + 5 x "b" (1 s each).
    events = [ev(0, 1, {"label": "a"})] * 10 + [ev(0, 1, {"label": "b"})] * 5
    assert t.merge_events_by_keys(events, []) == events  # no keys: unchanged (aw-core)
    assert len(t.merge_events_by_keys(events, ["unknown"])) == 1  # missing key: one group
    out = t.sort_by_duration(t.merge_events_by_keys(events, ["label"]))
    assert [(e.data["label"], e.duration) for e in out] == [("a", 10), ("b", 5)]
    assert all(e.id is None for e in out)


def test_merge_events_by_keys_two_keys_data_and_timestamp() -> None:
    # aw-core test_merge_events_by_keys_2; merged data holds only the keys, the
    # timestamp is the first member's.
    e1 = {"k1": "a", "k2": "a", "title": "x"}
    e2 = {"k1": "a", "k2": "c"}
    e3 = {"k1": "b", "k2": "a"}
    events = [ev(5, 1, e1)] * 10 + [ev(7, 1, e2)] * 9 + [ev(9, 1, e3)] * 8
    out = t.merge_events_by_keys(events, ["k1", "k2"])
    assert [(dict(e.data), e.duration) for e in out] == [
        ({"k1": "a", "k2": "a"}, 10), (e2, 9), (e3, 8)]
    assert [e.timestamp for e in out] == [at(5), at(7), at(9)]


def test_merge_events_by_keys_lists_missing_and_null() -> None:
    # aw-core turns list values (categories) into tuples so they can be keys;
    # an absent key and a null value are different groups (our decision).
    events = [ev(0, 1, {"$category": ["Work", "Dev"]}), ev(1, 2, {"$category": ["Work", "Dev"]}),
              ev(3, 4, {}), ev(7, 8, {"$category": None})]
    out = t.merge_events_by_keys(events, ["$category"])
    assert [(dict(e.data), e.duration) for e in out] == [
        ({"$category": ["Work", "Dev"]}, 3), ({}, 4), ({"$category": None}, 8)]


def test_chunk_events_by_key() -> None:
    # aw-core test_chunk_events_by_key: consecutive equal label1 joined, with
    # the originals as subevents; events without the key are skipped.
    e1 = ev(0, 1, {"label1": "1a", "label2": "2a"})
    e2 = ev(1, 1, {"label1": "1a", "label2": "2b"})
    e3 = ev(2, 1, {"label1": "1b", "label2": "2b"})
    out = t.chunk_events_by_key([e1, ev(1.5, 0, {}), e2, e3], "label1")
    assert [(e.data["label1"], e.duration) for e in out] == [("1a", 2), ("1b", 1)]
    assert [e.timestamp for e in out] == [e1.timestamp, e3.timestamp]
    assert out[0].data["subevents"] == [e1, e2]
    assert out[1].data["subevents"] == [e3]
    assert out[0].to_json()["data"]["subevents"][0]["data"]["label2"] == "2a"


# --- enrichment --------------------------------------------------------------------------


def test_split_url_events() -> None:
    # aw-core test_url_parse_event, all four URLs.
    urls = ["http://asd.com/test/?a=1",
            "https://www.asd.asd.com/test/test2/meh;meh2?asd=2&asdf=3#id",
            "file:///home/johan/myfile.txt", "about:blank"]
    out = t.split_url_events([ev(0, 1, {"url": u}) for u in urls] + [ev(0, 1, {"title": "x"})])
    keys = ("$protocol", "$domain", "$path", "$params", "$options", "$identifier")
    got = [tuple(e.data.get(k) for k in keys) for e in out]
    assert got == [
        ("http", "asd.com", "/test/", "", "a=1", ""),
        ("https", "asd.asd.com", "/test/test2/meh", "meh2", "asd=2&asdf=3", "id"),
        ("file", "file", "/home/johan/myfile.txt", "", "", ""),
        ("about", "about", "blank", "", "", ""),
        (None,) * 6,
    ]


def test_simplify_window_titles() -> None:
    # aw-core test_simplify_string: counters, FPS read-outs, unsaved markers.
    def one(data: dict[str, str], key: str) -> str:
        return str(t.simplify_string([ev(0, 1, data)], key)[0].data[key])

    assert one({"label": "(99) Facebook"}, "label") == "Facebook"
    assert one({"app": "Cemu.exe", "title": "Cemu - FPS: 133.7 - BotW"}, "title") == (
        "Cemu - FPS: ... - BotW")
    assert one({"app": "VSCode.exe", "title": "● report.md - Visual Studio Code"}, "title") == (
        "report.md - Visual Studio Code")
    assert one({"app": "Gedit", "title": "*test.md - gedit"}, "title") == "test.md - gedit"
    assert one({"title": "*test.md - gedit"}, "title") == "*test.md - gedit"  # no app


def test_categorize_deepest_match_wins() -> None:
    # aw-core test_categorize.
    rules = [(["Test"], t.Rule({"regex": "^just"})),
             (["Test", "Subtest"], t.Rule({"regex": "subtest$"})),
             (["Test", "Ignorecase"], t.Rule({"regex": "ignorecase", "ignore_case": True}))]
    events = [ev(0, 0, {"key": "just a test"}), ev(0, 0, {"key": "just a subtest"}),
              ev(0, 0, {"key": "just a IGNORECASE test"}), ev(0, 0, {})]
    cats = [e.data["$category"] for e in t.categorize(events, rules)]
    assert cats == [["Test"], ["Test", "Subtest"], ["Test", "Ignorecase"], ["Uncategorized"]]
    assert "$category" not in events[0].data  # inputs are not mutated


def test_categorize_ties_select_keys_and_inert_rules() -> None:
    # aw-core _pick_deepest_cat: among equally deep matches the later rule wins.
    # select_keys restricts the values searched; type "none" and an empty regex
    # never match (aw-core / aw-webui's "none" rules).
    e = ev(0, 1, {"app": "firefox", "title": "Docs - work"})
    assert t.categorize([e], [(["A"], t.Rule({"regex": "fire"})),
                              (["B"], t.Rule({"regex": "work"}))])[0].data["$category"] == ["B"]
    rule = t.Rule({"type": "regex", "regex": "work", "select_keys": ["app"]})
    assert t.categorize([e], [(["W"], rule)])[0].data["$category"] == ["Uncategorized"]
    for spec in ({"type": "none"}, {"type": "regex", "regex": ""}, {}):
        assert not t.Rule(spec).matches(e.data)
    with pytest.raises(ValueError, match="unknown rule type"):
        t.Rule({"type": "glob", "regex": "x"})
    with pytest.raises(ValueError, match="invalid regex"):
        t.Rule({"type": "regex", "regex": "("})


def test_tag_lists_every_match() -> None:
    # aw-core test_tags: two rules for the same tag both match -> listed twice.
    rules = [("Test", t.Rule({"regex": "value$"})), ("Test", t.Rule({"regex": "^just"}))]
    out = t.tag([ev(0, 0, {"key": "just a test value"}), ev(0, 0, {})], rules)
    assert [list(e.data["$tags"]) for e in out] == [["Test", "Test"], []]


# --- ordering, summing -------------------------------------------------------------------


def test_sorts_are_stable_and_directions_match_aw() -> None:
    # aw-core test_sort_by_timestamp / test_sort_by_duration.
    a, b = ev(2, 1, {"n": 1}), ev(1, 2, {"n": 2})
    assert t.sort_by_timestamp([a, b]) == [b, a]
    assert t.sort_by_duration([a, b]) == [b, a]
    c, d = ev(0, 3, {"n": 3}), ev(5, 3, {"n": 4})
    assert t.sort_by_duration([c, d]) == [c, d]  # ties keep their order


def test_sum_limit_concat() -> None:
    # aw-core test_sum_durations (10 x 1 s), limit_events = events[:count], concat = a + b.
    events = [ev(i, 1) for i in range(10)]
    assert t.sum_durations(events) == 10.0
    assert t.sum_durations([ev(0, 0.1)] * 3) == pytest.approx(0.3)
    assert t.limit_events(events, 3) == events[:3]
    assert t.limit_events(events, 30) == events
    assert t.concat(events[:2], events[5:6], []) == [events[0], events[1], events[5]]


def test_clip_to_period() -> None:
    # aw-server-rust's datastore cuts events to the query range; touching ones
    # are dropped, the order is newest first (both AW servers).
    events = [ev(-10, 20, {"n": 1}), ev(20, 5, {"n": 2}), ev(95, 10, {"n": 3}),
              ev(100, 5, {"n": 4}), ev(-5, 5, {"n": 5}), ev(50, 0, {"n": 6})]
    out = t.clip_to_period(events, datetime_to_us(T0), datetime_to_us(at(100)))
    assert [e.data["n"] for e in out] == [3, 6, 2, 1]
    assert spans(out) == [(95, 100), (50, 50), (20, 25), (0, 10)]
