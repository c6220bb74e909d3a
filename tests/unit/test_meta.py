"""Name/label format checks and ObjectMeta validation (apimachinery behaviour)."""

import re
from datetime import UTC, datetime

import pytest

from kubelite.api.field import Path
from kubelite.api.meta import (
    generate_name_suffix,
    is_c_identifier,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    is_valid_ip,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns_label,
    name_is_dns_subdomain,
    new_uid,
    now_rfc3339,
    now_rfc3339_micro,
    parse_time,
    validate_object_meta,
    validate_object_meta_update,
)

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                 "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                 "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


@pytest.mark.parametrize("v", ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a",
                               "1--a--b--2", "a" * 63])
def test_dns1123_label_good(v):
    assert is_dns1123_label(v) == []


@pytest.mark.parametrize("v", ["", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_",
                               "a_", "_a", "a_b", "1_", "_1", "1_2", "a b", " ", "a\n", "a%b", "é"])
def test_dns1123_label_bad(v):
    assert is_dns1123_label(v) == [LABEL_MSG]


def test_dns1123_label_messages():
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1123_label("A" * 64) == ["must be no more than 63 characters", LABEL_MSG]


@pytest.mark.parametrize("v", ["a", "ab", "a.b", "a-1.b-2", "0.a", "a.0", "1.2.3.4", ("a" * 63 + ".") * 3 + "a"])
def test_dns1123_subdomain_good(v):
    assert is_dns1123_subdomain(v) == []


@pytest.mark.parametrize("v", ["", "A", "a.", ".a", "a..b", "a_b", "a.-b", "a-.b", "a b", "a\n"])
def test_dns1123_subdomain_bad(v):
    assert is_dns1123_subdomain(v) == [SUBDOMAIN_MSG]


def test_dns1123_subdomain_too_long():
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]


def test_dns1035():
    assert is_dns1035_label("a-1") == []
    assert is_dns1035_label("1a") == [
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
        "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]


@pytest.mark.parametrize("v", ["simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple",
                               "now-with-dashes/simple", "now-with-dashes/now-with-dashes",
                               "now.with.dots/simple", "now-with.dashes-and.dots/simple",
                               "1-num.2-num/3-num", "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123",
                               "example.com/Uppercase_Is_OK_123", "requests.storage-foo", "a" * 63,
                               "a" * 253 + "/" + "b" * 63])
def test_qualified_name_good(v):
    assert is_qualified_name(v) == []


def test_qualified_name_bad():
    assert is_qualified_name("nospecialchars%^=@") == [NAME_PART_MSG]
    assert is_qualified_name("cantendwithadash-") == [NAME_PART_MSG]
    assert is_qualified_name("-cantstartwithadash-") == [NAME_PART_MSG]
    assert is_qualified_name("") == ["name part must be non-empty", NAME_PART_MSG]
    assert is_qualified_name("/simple") == ["prefix part must be non-empty"]
    assert is_qualified_name("example.com/") == ["name part must be non-empty", NAME_PART_MSG]
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 bytes"]
    assert is_qualified_name("Example.com/x") == ["prefix part " + SUBDOMAIN_MSG]
    assert is_qualified_name("a" * 254 + "/x") == ["prefix part must be no more than 253 bytes"]
    assert is_qualified_name("a/b/c") == [
        "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
        "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
        "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and "
        "'/' (e.g. 'example.com/MyName')"]


def test_label_value():
    for v in ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, "",
              "Uppercase_Is_OK_123", "a.b_c-d"]:
        assert is_valid_label_value(v) == [], v
    for v in ["nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad", "-starts-with-dash",
              "ends-with-dash-", ".starts.with.dot", "ends.with.dot."]:
        assert is_valid_label_value(v) == [LABEL_VALUE_MSG], v
    assert is_valid_label_value("a" * 64) == ["must be no more than 63 bytes"]


def test_c_identifier_and_env():
    assert is_c_identifier("_a1") == []
    assert is_c_identifier("1a") == [
        "a valid C identifier must start with alphabetic character or '_', followed by a string of "
        "alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for "
        "validation is '[A-Za-z_][A-Za-z0-9_]*')"]
    for v in ["A", "ABC", "AbC_123", "_123", "A_B", "-", "a-b", "a.b", "my.env-name", "MY_ENV.NAME"]:
        assert is_env_var_name(v) == [], v
    msg = ("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
           "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex "
           "used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')")
    assert is_env_var_name("1ABC") == [msg]
    assert is_env_var_name("") == [msg]
    assert is_env_var_name("a b") == [msg]
    assert is_env_var_name(".") == ["must not be '.'"]
    assert is_env_var_name("..") == ["must not be '..'"]
    assert is_env_var_name("..a") == ["must not start with '..'"]
    assert is_config_map_key("a.b") == []
    assert is_config_map_key("..") == ["must not be '..'"]


def test_port_name_and_num():
    for v in ["telnet", "re-mail-ck", "pop3", "a", "a-1", "1-a", "a-1-b-2-c", "1-a-2-b-3"]:
        assert is_valid_port_name(v) == [], v
    assert is_valid_port_name("longerthan15characters") == ["must be no more than 15 characters"]
    assert is_valid_port_name("") == [
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "must contain at least one letter (a-z)"]
    assert is_valid_port_name("12345") == ["must contain at least one letter (a-z)"]
    assert is_valid_port_name("a--b") == ["must not contain consecutive hyphens"]
    assert is_valid_port_name("-ab") == ["must not begin or end with a hyphen"]
    assert is_valid_port_name("A") == [
        "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        "must contain at least one letter (a-z)"]
    assert is_valid_port_num(1) == [] and is_valid_port_num(65535) == []
    assert is_valid_port_num(0) == ["must be between 1 and 65535, inclusive"]
    assert is_valid_port_num(65536) == ["must be between 1 and 65535, inclusive"]


def test_ip():
    for v in ["1.2.3.4", "0.0.0.0", "255.255.255.255", "::1", "2001:db8::1", "::", "fe80::1:2"]:
        assert is_valid_ip(v) == [], v
    bad = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
    for v in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "a.b.c.d", "1.2.3.4/24", "::1%eth0", " 1.2.3.4", "2001:db8:::1"]:
        assert is_valid_ip(v) == [bad], v
    assert is_valid_ip("001.2.3.4") == ["must not have leading 0s"]
    assert is_valid_ip("::ffff:1.2.3.4") == ["must not be an IPv4-mapped IPv6 address"]
    assert is_valid_ip("2001:DB8::1") == ['must be in canonical form ("2001:db8::1")']
    assert is_valid_ip("2001:db8:0:0:0:0:0:1") == ['must be in canonical form ("2001:db8::1")']


def test_name_funcs_prefix():
    assert name_is_dns_subdomain("foo-", True) == []
    assert name_is_dns_label("foo-", True) == []
    assert name_is_dns_subdomain("foo-", False) == [SUBDOMAIN_MSG]
    assert name_is_dns_subdomain("-", True) == [SUBDOMAIN_MSG]  # a lone dash is not masked
    assert name_is_dns_subdomain("Foo-", True) == [SUBDOMAIN_MSG]


def errs_s(errs):
    return [str(e) for e in errs]


def test_object_meta_create():
    p = Path("metadata")
    assert validate_object_meta({"name": "ok", "namespace": "default"}, True, name_is_dns_subdomain, p) == []
    assert errs_s(validate_object_meta({}, True, name_is_dns_subdomain, p)) == [
        "metadata.name: Required value: name or generateName is required",
        "metadata.namespace: Required value"]
    assert errs_s(validate_object_meta({"name": "x", "namespace": "ns"}, False, name_is_dns_subdomain, p)) == [
        "metadata.namespace: Forbidden: not allowed on this type"]
    assert errs_s(validate_object_meta({"name": "Bad_Name", "namespace": "Bad.NS"}, True,
                                       name_is_dns_subdomain, p)) == [
        f'metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}',
        f'metadata.namespace: Invalid value: "Bad.NS": {LABEL_MSG}']
    assert errs_s(validate_object_meta({"generateName": "Bad-", "name": "Bad-x1234", "namespace": "a"}, True,
                                       name_is_dns_subdomain, p)) == [
        f'metadata.generateName: Invalid value: "Bad-": {SUBDOMAIN_MSG}',
        f'metadata.name: Invalid value: "Bad-x1234": {SUBDOMAIN_MSG}']


def test_object_meta_labels_annotations():
    p = Path("metadata")
    meta = {"name": "a", "namespace": "b", "labels": {"a b": "c", "ok": "-bad"},
            "annotations": {"Hello/World": "x", "ok": "y", "a b": "z"}}
    assert errs_s(validate_object_meta(meta, True, name_is_dns_subdomain, p)) == [
        f'metadata.labels: Invalid value: "a b": {NAME_PART_MSG}',
        f'metadata.labels: Invalid value: "-bad": {LABEL_VALUE_MSG}',
        f'metadata.annotations: Invalid value: "a b": {NAME_PART_MSG}',
    ]
    # annotation keys are checked lowercased: "Hello/World" is fine
    assert errs_s(validate_object_meta({"name": "a", "namespace": "b", "annotations": {"Hello/World": "x"}},
                                       True, name_is_dns_subdomain, p)) == []
    big = {"name": "a", "namespace": "b", "annotations": {"a": "x" * (256 * 1024)}}
    assert errs_s(validate_object_meta(big, True, name_is_dns_subdomain, p)) == [
        "metadata.annotations: Too long: may not be more than 262144 bytes"]
    ok = {"name": "a", "namespace": "b", "annotations": {"a": "x" * (256 * 1024 - 1)}}
    assert validate_object_meta(ok, True, name_is_dns_subdomain, p) == []


def test_object_meta_owner_refs_finalizers_generation():
    p = Path("metadata")
    meta = {"name": "a", "namespace": "b", "generation": -1,
            "ownerReferences": [{"apiVersion": "a/b/c", "kind": "", "name": "", "uid": ""},
                                {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "1"},
                                {"apiVersion": "v1", "kind": "RC", "name": "x", "uid": "2", "controller": True},
                                {"apiVersion": "v1", "kind": "RC", "name": "y", "uid": "3", "controller": True}],
            "finalizers": ["orphan", "foregroundDeletion", "bad finalizer"]}
    out = errs_s(validate_object_meta(meta, True, name_is_dns_subdomain, p))
    assert out[0] == "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
    assert out[1] == ('metadata.ownerReferences[0].apiVersion: Invalid value: "a/b/c": '
                      "must be <group>/<version> or <version>")
    assert out[2] == "metadata.ownerReferences[0].kind: Required value: must not be empty"
    assert out[3] == "metadata.ownerReferences[0].name: Required value: must not be empty"
    assert out[4] == "metadata.ownerReferences[0].uid: Required value: must not be empty"
    assert out[5].startswith("metadata.ownerReferences[1]: Invalid value: ")
    assert out[5].endswith(": /v1, Kind=Event is disallowed from being an owner")
    assert out[6].startswith("metadata.ownerReferences: Invalid value: ")
    assert out[6].endswith('Only one reference can have Controller set to true. Found "true" in references '
                           "for RC/x and RC/y")
    assert out[7] == f'metadata.finalizers: Invalid value: "bad finalizer": {NAME_PART_MSG}'
    assert out[8].startswith("metadata.finalizers: Invalid value: ")
    assert out[8].endswith("finalizer orphan and foregroundDeletion cannot be both set")
    assert len(out) == 9
    missing = {"name": "a", "namespace": "b", "ownerReferences": [{"kind": "K", "name": "n", "uid": "u"}]}
    assert errs_s(validate_object_meta(missing, True, name_is_dns_subdomain, p)) == [
        "metadata.ownerReferences[0].apiVersion: Required value: must not be empty"]


def test_object_meta_update():
    p = Path("metadata")
    old = {"name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "5",
           "creationTimestamp": "2026-01-02T03:04:05Z", "generation": 3}
    assert validate_object_meta_update(dict(old), old, p) == []
    # equivalent timestamp spelled differently is not a change
    same = dict(old, creationTimestamp="2026-01-02T04:04:05+01:00")
    assert validate_object_meta_update(same, old, p) == []
    new = dict(old, name="b", namespace="other", uid="u2", resourceVersion="", generation=2,
               creationTimestamp="2026-01-02T03:04:06Z", deletionTimestamp="2026-01-02T03:04:06Z",
               deletionGracePeriodSeconds=30)
    assert errs_s(validate_object_meta_update(new, old, p)) == [
        'metadata.resourceVersion: Invalid value: "": must be specified for an update',
        "metadata.generation: Invalid value: 2: must not be decremented",
        'metadata.name: Invalid value: "b": field is immutable',
        'metadata.namespace: Invalid value: "other": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
        'metadata.creationTimestamp: Invalid value: "2026-01-02T03:04:06Z": field is immutable',
        'metadata.deletionTimestamp: Invalid value: "2026-01-02T03:04:06Z": field is immutable',
        "metadata.deletionGracePeriodSeconds: Invalid value: 30: field is immutable",
    ]


def test_object_meta_update_finalizers_while_deleting():
    p = Path("metadata")
    old = {"name": "a", "namespace": "ns", "resourceVersion": "1", "deletionTimestamp": "2026-01-02T03:04:05Z",
           "deletionGracePeriodSeconds": 0, "finalizers": ["x/a"]}
    new = dict(old, finalizers=["x/a", "x/c", "x/b"])
    assert errs_s(validate_object_meta_update(new, old, p)) == [
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, "
        'found new finalizers []string{"x/b", "x/c"}']
    assert validate_object_meta_update(dict(old, finalizers=[]), old, p) == []


def test_times_and_ids():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now_rfc3339())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now_rfc3339_micro())
    assert parse_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("2026-01-02T04:04:05.5+01:00") == datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("2026-01-02 03:04:05")
    with pytest.raises(ValueError):
        parse_time("2026-13-02T03:04:05Z")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", new_uid())
    n = generate_name_suffix("web-")
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", n)
    long = generate_name_suffix("x" * 100)
    assert len(long) == 63 and long.startswith("x" * 58)
