"""Label selectors (labels.Parse, LabelSelectorAsSelector) and field selectors (fields.ParseSelector)."""

import pytest

from kubelite.api.field import Path
from kubelite.api.selectors import (
    LabelSelector,
    SelectorError,
    escape_field_value,
    label_selector_from_object,
    parse_field_selector,
    parse_label_selector,
    selector_from_set,
    validate_label_selector,
)

LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                 "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                 "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
BINARY_OPS = "in, notin, =, ==, !=, gt, lt"


@pytest.mark.parametrize("s", ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1",
                               "x>1,z<5"])
def test_parse_good_roundtrip(s):
    assert str(parse_label_selector(s)) == s.replace(" ", "")


@pytest.mark.parametrize("s", ["x=a||y=b", "x==a==b", "!x=a", "x<a"])
def test_parse_bad(s):
    with pytest.raises(SelectorError):
        parse_label_selector(s)


@pytest.mark.parametrize("s,expect", [
    ("x in (b,a),y", "x in (a,b),y"),
    ("z,a=b,m notin (q)", "a=b,m notin (q),z"),  # sorted by key
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("x in (a,a)", "x in (a)"),
    ("x in (,)", "x in ()"),
    ("  a  =  b  ", "a=b"),
    ("a==b", "a==b"),
    ("in in (in,notin)", "in in (in,notin)"),
    ("notin=in", "notin=in"),
    ("example.com/key=V_1.x", "example.com/key=V_1.x"),
])
def test_parse_string(s, expect):
    assert str(parse_label_selector(s)) == expect


@pytest.mark.parametrize("s,labels", [
    ("", {"x": "y"}), ("x=y", {"x": "y"}), ("x=y,z=w", {"x": "y", "z": "w"}),
    ("x!=y,z!=w", {"x": "z", "z": "a"}), ("notin=in", {"notin": "in"}), ("x", {"x": "z"}), ("!x", {"y": "z"}),
    ("x>1", {"x": "2"}), ("x<1", {"x": "0"}), ("x in (a,b)", {"x": "b"}), ("x notin (a,b)", {"x": "c"}),
    ("x notin (a,b)", {}), ("x!=a", {}), ("x=", {"x": ""}), ("x in ()", {"x": ""}),
])
def test_matches(s, labels):
    assert parse_label_selector(s).matches(labels)


@pytest.mark.parametrize("s,labels", [
    ("x=z", {}), ("x=y", {"x": "z"}), ("x=y,z=w", {"x": "w", "z": "w"}), ("x!=y,z!=w", {"x": "z", "z": "w"}),
    ("x", {"y": "z"}), ("!x", {"x": "z"}), ("x>1", {"x": "0"}), ("x<1", {"x": "2"}), ("x>1", {"x": "a"}),
    ("x>1", {}), ("x in (a,b)", {"x": "c"}), ("x in (a,b)", {}), ("x notin (a,b)", {"x": "a"}),
    ("x=", {}),
])
def test_no_match(s, labels):
    assert not parse_label_selector(s).matches(labels)


@pytest.mark.parametrize("s,msg", [
    ("x=a||y=b", f'unable to parse requirement: values[0][x]: Invalid value: "a||y": {LABEL_VALUE_MSG}'),
    ("x==a==b", "found '==', expected: ',' or 'end of string'"),
    ("!x=a", "found '=', expected: ',' or 'end of string'"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a,,b", "found ',', expected: identifier after ','"),
    ("x=a,", "found '', expected: identifier after ','"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
    ("(", "found '(', expected: !, identifier, or 'end of string'"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("a b", f"unable to parse requirement: found 'b', expected: {BINARY_OPS}"),
    ("a!b", f"unable to parse requirement: found '!', expected: {BINARY_OPS}"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
    ("a in ((b)", "unable to parse requirement: found '(', expected: ',', ')' or identifier"),
    ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
    ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
    ("a<=1", "unable to parse requirement: found '=', expected: identifier"),
    ("a=-b", f'unable to parse requirement: values[0][a]: Invalid value: "-b": {LABEL_VALUE_MSG}'),
    ("a in (ok,-b)", f'unable to parse requirement: values[0][a]: Invalid value: "-b": {LABEL_VALUE_MSG}'),
    ("x<a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, "
            "the value must be an integer"),
    ("-a=b", f'unable to parse requirement: <nil>: Invalid value: "-a": {NAME_PART_MSG}'),
    ("a" * 64, 'unable to parse requirement: <nil>: Invalid value: "' + "a" * 64
     + '": name part must be no more than 63 bytes'),
])
def test_parse_error_messages(s, msg):
    with pytest.raises(SelectorError) as ei:
        parse_label_selector(s)
    assert ei.value.message == msg
    assert str(ei.value) == msg


def test_requires_exact_match():
    sel = parse_label_selector("a=b,c in (d),e in (f,g),h!=i")
    assert sel.requires_exact_match("a") == "b"
    assert sel.requires_exact_match("c") == "d"
    assert sel.requires_exact_match("e") is None
    assert sel.requires_exact_match("h") is None
    assert sel.requires_exact_match("zz") is None


def test_empty_and_set():
    assert parse_label_selector("").empty()
    assert parse_label_selector("").matches({})
    assert not parse_label_selector("a").empty()
    sel = selector_from_set({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert LabelSelector.everything().matches({"x": "y"})
    assert not LabelSelector.match_nothing().matches({})


def test_from_object():
    assert not label_selector_from_object(None).matches({})
    assert label_selector_from_object({}).matches({"a": "b"})
    assert label_selector_from_object({"matchLabels": {}, "matchExpressions": []}).empty()
    sel = label_selector_from_object({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                             {"key": "env", "operator": "NotIn", "values": ["prod"]},
                             {"key": "team", "operator": "Exists"},
                             {"key": "legacy", "operator": "DoesNotExist"}]})
    assert str(sel) == "app=web,env notin (prod),!legacy,team,tier in (be,fe)"
    assert sel.matches({"app": "web", "tier": "fe", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "fe", "team": "x", "legacy": "1"})
    assert not sel.matches({"app": "web", "tier": "fe", "team": "x", "env": "prod"})
    assert not sel.matches({"app": "web", "tier": "mid", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "fe"})


@pytest.mark.parametrize("obj,msg", [
    ({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, '"Foo" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In"}]},
     "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     'values: Invalid value: ["x"]: values set must be empty for exists and does not exist'),
    ({"matchLabels": {"a": "-x"}}, f'values[0][a]: Invalid value: "-x": {LABEL_VALUE_MSG}'),
    ({"matchLabels": {"-a": "x"}}, f'key: Invalid value: "-a": {NAME_PART_MSG}'),
    ({"matchLabels": {"-a": "-x"}}, f'[key: Invalid value: "-a": {NAME_PART_MSG}, '
                                    f'values[0][-a]: Invalid value: "-x": {LABEL_VALUE_MSG}]'),
])
def test_from_object_errors(obj, msg):
    with pytest.raises(SelectorError) as ei:
        label_selector_from_object(obj)
    assert ei.value.message == msg


def test_validate_label_selector():
    p = Path("spec", "selector")
    assert validate_label_selector(None, p) == []
    assert validate_label_selector({"matchLabels": {"a": "b"}}, p) == []
    errs = validate_label_selector({
        "matchLabels": {"-a": "-b"},
        "matchExpressions": [{"key": "k", "operator": "In"},
                             {"key": "k", "operator": "Exists", "values": ["v"]},
                             {"key": "k", "operator": "Bad"},
                             {"key": "k", "operator": "In", "values": ["-v"]}]}, p)
    assert [str(e) for e in errs] == [
        f'spec.selector.matchLabels: Invalid value: "-a": {NAME_PART_MSG}',
        f'spec.selector.matchLabels: Invalid value: "-b": {LABEL_VALUE_MSG}',
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is "
        "'In' or 'NotIn'",
        "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is "
        "'Exists' or 'DoesNotExist'",
        'spec.selector.matchExpressions[2].operator: Invalid value: "Bad": not a valid selector operator',
        f'spec.selector.matchExpressions[3].values[0]: Invalid value: "-v": {LABEL_VALUE_MSG}',
    ]


# --- field selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("s,reqs", [
    ("", []),
    ("a=b", [("a", "=", "b")]),
    ("a==b", [("a", "=", "b")]),
    ("a!=b", [("a", "!=", "b")]),
    ("b=1,a=2", [("a", "=", "2"), ("b", "=", "1")]),
    ("metadata.name=x\\,y", [("metadata.name", "=", "x,y")]),
    ("a=x\\=y\\\\z", [("a", "=", "x=y\\z")]),
    ("a=", [("a", "=", "")]),
    (",,a=b,", [("a", "=", "b")]),
    ("a=!b", [("a", "=", "!b")]),
    ("spec.nodeName=,status.phase!=Running", [("spec.nodeName", "=", ""), ("status.phase", "!=", "Running")]),
])
def test_field_parse(s, reqs):
    assert parse_field_selector(s).requirements == reqs


@pytest.mark.parametrize("s,msg", [
    ("a", "invalid selector: 'a'; can't understand 'a'"),
    ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
    ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ("a=\\x", "invalid field selector: invalid escape sequence: \\x"),
])
def test_field_parse_errors(s, msg):
    with pytest.raises(SelectorError) as ei:
        parse_field_selector(s)
    assert ei.value.message == msg


def test_field_matches_and_helpers():
    fs = parse_field_selector("metadata.name=foo,status.phase!=Failed")
    assert fs.matches({"metadata.name": "foo", "status.phase": "Running"})
    assert not fs.matches({"metadata.name": "foo", "status.phase": "Failed"})
    assert not fs.matches({"metadata.name": "bar", "status.phase": "Running"})
    assert fs.matches({"metadata.name": "foo"})  # missing field reads as ""
    assert fs.fields() == {"metadata.name", "status.phase"}
    assert fs.exact("metadata.name") == "foo"
    assert fs.exact("status.phase") is None
    assert str(fs) == "metadata.name=foo,status.phase!=Failed"
    assert parse_field_selector("").matches({"a": "b"})
    assert parse_field_selector("").empty()
    assert parse_field_selector("spec.nodeName=").matches({"spec.nodeName": ""})
    assert str(parse_field_selector("a=x\\,y")) == "a=x\\,y"
    assert escape_field_value("a,b=c\\") == "a\\,b\\=c\\\\"


def test_field_empty_term_and_transform():
    fs = parse_field_selector("=")
    assert fs.fields() == {""}  # the server reports "field label not supported: "
    assert fs.transform(lambda f, v: (f, v)).empty()
    t = parse_field_selector("spec.host=n1").transform(
        lambda f, v: ("spec.nodeName" if f == "spec.host" else f, v))
    assert t.requirements == [("spec.nodeName", "=", "n1")]
