"""Object metadata helpers and validation.

Mirrors apimachinery's util/validation (name/label/key format checks, which
return plain message strings), api/validation/objectmeta.go (ObjectMeta on
create and update) and a few metav1 helpers (times, UIDs, generateName).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from kubelite.api.field import (
    FieldError,
    Path,
    forbidden,
    invalid,
    required,
    too_long,
)

# ---------------------------------------------------------------------------------------------
# message helpers (util/validation and api/validate/content)
# ---------------------------------------------------------------------------------------------


def max_len_error(length: int) -> str:
    """util/validation.MaxLenError (DNS names, port names, config keys)."""
    return f"must be no more than {length} characters"


def max_len_bytes_error(length: int) -> str:
    """content.MaxLenError (label keys and values)."""
    return f"must be no more than {length} bytes"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return msg + " (regex used for validation is '" + fmt + "')"
    msg += " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += "'" + ex + "', "
    msg += "regex used for validation is '" + fmt + "')"
    return msg


def empty_error() -> str:
    return "must be non-empty"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


# ---------------------------------------------------------------------------------------------
# format checks: each returns a list of messages (empty when valid)
# ---------------------------------------------------------------------------------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                         "and must start and end with an alphanumeric character")
DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                             "'-' or '.', and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
                         "an alphabetic character, and end with an alphanumeric character")
DNS1035_LABEL_MAX_LENGTH = 63

_dns1123_label_re = re.compile(DNS1123_LABEL_FMT)
_dns1123_subdomain_re = re.compile(DNS1123_SUBDOMAIN_FMT)
_dns1035_label_re = re.compile(DNS1035_LABEL_FMT)


def _match(rx: re.Pattern[str], value: str) -> bool:
    return rx.fullmatch(value) is not None


def _blen(s: str) -> int:
    """Go's len(string): bytes of the UTF-8 encoding."""
    return len(s.encode("utf-8", "surrogatepass"))


def is_dns1123_label(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _match(_dns1123_label_re, value):
        if _match(_dns1123_subdomain_re, value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _match(_dns1123_subdomain_re, value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def _content_is_dns1123_subdomain(value: str) -> list[str]:
    """content.IsDNS1123Subdomain (uses the "bytes" length message)."""
    errs: list[str] = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_bytes_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _match(_dns1123_subdomain_re, value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _match(_dns1035_label_re, value):
        errs.append(regex_error(DNS1035_LABEL_ERR_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_KEY_ERR_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                     "an alphanumeric character")
LABEL_KEY_MAX_LENGTH = 63
_label_key_re = re.compile(LABEL_KEY_FMT)
LABEL_VALUE_FMT = "(" + LABEL_KEY_FMT + ")?"
LABEL_VALUE_ERR_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                       "or '.', and must start and end with an alphanumeric character")
LABEL_VALUE_MAX_LENGTH = 63
_label_value_re = re.compile(LABEL_VALUE_FMT)


def is_qualified_name(value: str) -> list[str]:
    """content.IsLabelKey (a.k.a. IsQualifiedName): ``[prefix/]name``."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if len(prefix) == 0:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in _content_is_dns1123_subdomain(prefix))
    else:
        return ["a valid label key " + regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if len(name) == 0:
        errs.append("name part " + empty_error())
    elif _blen(name) > LABEL_KEY_MAX_LENGTH:
        errs.append("name part " + max_len_bytes_error(LABEL_KEY_MAX_LENGTH))
    if not _match(_label_key_re, name):
        errs.append("name part " + regex_error(LABEL_KEY_ERR_MSG, LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errs


is_label_key = is_qualified_name


def is_valid_label_value(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_bytes_error(LABEL_VALUE_MAX_LENGTH))
    if not _match(_label_value_re, value):
        errs.append(regex_error(LABEL_VALUE_ERR_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


C_IDENTIFIER_FMT = "[A-Za-z_][A-Za-z0-9_]*"
C_IDENTIFIER_ERR_MSG = ("a valid C identifier must start with alphabetic character or '_', followed by a string "
                        "of alphanumeric characters or '_'")
_c_identifier_re = re.compile(C_IDENTIFIER_FMT)


def is_c_identifier(value: str) -> list[str]:
    if not _match(_c_identifier_re, value):
        return [regex_error(C_IDENTIFIER_ERR_MSG, C_IDENTIFIER_FMT, "my_name", "MY_NAME", "MyName")]
    return []


ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
ENV_VAR_NAME_ERR_MSG = ("a valid environment variable name must consist of alphabetic characters, digits, '_', "
                        "'-', or '.', and must not start with a digit")
RELAXED_ENV_VAR_NAME_ERR_MSG = ("a valid environment variable name must consist only of printable ASCII characters "
                                "other than '='")
_env_var_name_re = re.compile(ENV_VAR_NAME_FMT)


def _has_chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_env_var_name(value: str) -> list[str]:
    errs: list[str] = []
    if not _match(_env_var_name_re, value):
        errs.append(regex_error(ENV_VAR_NAME_ERR_MSG, ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    errs.extend(_has_chdir_prefix(value))
    return errs


def is_relaxed_env_var_name(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) == 0:
        errs.append("environment variable name " + empty_error())
    for ch in value:
        if ord(ch) > 127 or not ch.isprintable() or ch == "=":
            errs.append(RELAXED_ENV_VAR_NAME_ERR_MSG)
            break
    return errs


CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_MAP_KEY_ERR_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_config_map_key_re = re.compile(CONFIG_MAP_KEY_FMT)


def is_config_map_key(value: str) -> list[str]:
    errs: list[str] = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _match(_config_map_key_re, value):
        errs.append(regex_error(CONFIG_MAP_KEY_ERR_MSG, CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    errs.extend(_has_chdir_prefix(value))
    return errs


_port_name_charset_re = re.compile("[-a-z0-9]+")
_port_name_one_letter_re = re.compile("[a-z]")


def is_valid_port_name(port: str) -> list[str]:
    errs: list[str] = []
    if _blen(port) > 15:
        errs.append(max_len_error(15))
    if not _match(_port_name_charset_re, port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _port_name_one_letter_re.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if len(port) > 0 and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_port_num(port: int) -> list[str]:
    if 1 <= port <= 65535:
        return []
    return [inclusive_range_error(1, 65535)]


def is_in_range(value: int, lo: int, hi: int) -> list[str]:
    if lo <= value <= hi:
        return []
    return [inclusive_range_error(lo, hi)]


def is_valid_group_id(gid: int) -> list[str]:
    return is_in_range(gid, 0, 2**31 - 1)


def is_valid_user_id(uid: int) -> list[str]:
    return is_in_range(uid, 0, 2**31 - 1)


PERCENT_FMT = "[0-9]+%"
_percent_re = re.compile(PERCENT_FMT)


def is_valid_percent(percent: str) -> list[str]:
    if not _match(_percent_re, percent):
        return [regex_error("a valid percent string must be a numeric string followed by an ending '%'",
                            PERCENT_FMT, "1%", "93%")]
    return []


HTTP_HEADER_NAME_FMT = "[-A-Za-z0-9]+"
_http_header_name_re = re.compile(HTTP_HEADER_NAME_FMT)


def is_http_header_name(value: str) -> list[str]:
    if not _match(_http_header_name_re, value):
        return [regex_error("a valid HTTP header must consist of alphanumeric characters or '-'",
                            HTTP_HEADER_NAME_FMT, "X-Header-Name")]
    return []


# --- IP addresses ----------------------------------------------------------------------------

IP_INVALID_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _parse_ipv4_sloppy(s: str) -> ipaddress.IPv4Address | None:
    parts = s.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for p in parts:
        if not p or not p.isascii() or not p.isdigit() or int(p) > 255:
            return None
        octets.append(int(p))
    return ipaddress.IPv4Address(bytes(octets))


def parse_ip_sloppy(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """netutils.ParseIPSloppy: like net.ParseIP but IPv4 octets may have leading zeros."""
    if ":" not in s:
        return _parse_ipv4_sloppy(s)
    if "%" in s or not s.isascii():
        return None
    head, sep, tail = s.rpartition(":")
    if "." in tail:  # embedded IPv4, possibly with leading zeros
        v4 = _parse_ipv4_sloppy(tail)
        if v4 is None:
            return None
        s = head + sep + str(v4)
    try:
        return ipaddress.IPv6Address(s)
    except ValueError:
        return None


def go_ip_string(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """net.IP.String(): IPv4-mapped addresses print as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _strict_ip_errors(value: str) -> list[str]:
    errs: list[str] = []
    strict_ok = True
    is4in6 = False
    if ":" not in value:
        strict_ok = all(not (len(p) > 1 and p[0] == "0") for p in value.split("."))
    else:
        tail = value.rpartition(":")[2]
        if "." in tail and any(len(p) > 1 and p[0] == "0" for p in tail.split(".")):
            strict_ok = False
        else:
            try:
                is4in6 = ipaddress.IPv6Address(value).ipv4_mapped is not None
            except ValueError:
                strict_ok = False
    if not strict_ok:
        errs.append("must not have leading 0s")
    if is4in6:
        errs.append("must not be an IPv4-mapped IPv6 address")
    return errs


def is_valid_ip(value: str) -> list[str]:
    """Messages of validation.IsValidIP (strict, canonical form required)."""
    ip = parse_ip_sloppy(value)
    if ip is None:
        return [IP_INVALID_MSG]
    errs = _strict_ip_errors(value)
    if errs:
        return errs
    canon = go_ip_string(ip)
    if value != canon:
        return [f'must be in canonical form ("{canon}")']
    return []


def is_valid_ip_for_legacy_field(path: Path, value: str, strict: bool,
                                 valid_old_ips: list[str] | None = None) -> list[FieldError]:
    """validation.IsValidIPForLegacyField."""
    if valid_old_ips and value in valid_old_ips:
        return []
    if parse_ip_sloppy(value) is None:
        return [invalid(path, value, IP_INVALID_MSG)]
    if strict:
        return [invalid(path, value, m) for m in _strict_ip_errors(value)]
    return []


# ---------------------------------------------------------------------------------------------
# ValidateNameFunc
# ---------------------------------------------------------------------------------------------

NameFunc = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    if prefix:
        name = _mask_trailing_dash(name)
    return is_dns1123_subdomain(name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    if prefix:
        name = _mask_trailing_dash(name)
    return is_dns1123_label(name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    if prefix:
        name = _mask_trailing_dash(name)
    return is_dns1035_label(name)


validate_namespace_name = name_is_dns_label

# path.IsValidPathSegmentName / ValidatePathSegmentName (names of most API-server objects
# are checked against this in addition to the nameFn in the REST layer)


def is_valid_path_segment_name(name: str) -> list[str]:
    for bad in (".", ".."):
        if name == bad:
            return [f"may not be '{bad}'"]
    return is_valid_path_segment_prefix(name)


def is_valid_path_segment_prefix(name: str) -> list[str]:
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def validate_path_segment_name(name: str, prefix: bool) -> list[str]:
    if prefix:
        return is_valid_path_segment_prefix(name)
    return is_valid_path_segment_name(name)


# ---------------------------------------------------------------------------------------------
# ObjectMeta validation
# ---------------------------------------------------------------------------------------------

FIELD_IMMUTABLE_ERROR_MSG = "field is immutable"
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * (1 << 10)
IS_NEGATIVE_ERROR_MSG = "must be greater than or equal to 0"
FINALIZER_ORPHAN_DEPENDENTS = "orphan"
FINALIZER_DELETE_DEPENDENTS = "foregroundDeletion"
_BANNED_OWNERS = {("", "v1", "Event")}


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def validate_nonnegative_field(value: Any, path: Path) -> list[FieldError]:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(path, value, IS_NEGATIVE_ERROR_MSG)]
    return []


def validate_label_name(name: str, path: Path) -> list[FieldError]:
    return [invalid(path, name, m) for m in is_qualified_name(name)]


def validate_labels(labels: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    for k, v in _dict(labels).items():
        errs.extend(validate_label_name(k, path))
        val = v if isinstance(v, str) else ("" if v is None else str(v))
        errs.extend(invalid(path, val, m) for m in is_valid_label_value(val))
    return errs


def annotations_size(annotations: dict[str, Any]) -> int:
    total = 0
    for k, v in annotations.items():
        total += _blen(k) + (_blen(v) if isinstance(v, str) else 0)
    return total


def validate_annotations(annotations: Any, path: Path) -> list[FieldError]:
    ann = _dict(annotations)
    errs: list[FieldError] = []
    for k in ann:
        errs.extend(invalid(path, k, m) for m in is_qualified_name(k.lower()))
    if annotations_size(ann) > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_B))
    return errs


def parse_group_version(gv: str) -> tuple[str, str] | None:
    """schema.ParseGroupVersion; None on error."""
    if gv == "" or gv == "/":
        return "", ""
    n = gv.count("/")
    if n == 0:
        return "", gv
    if n == 1:
        g, _, v = gv.partition("/")
        return g, v
    return None


def _validate_owner_reference(ref: dict[str, Any], path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    api_version = _str(ref.get("apiVersion"))
    gv = parse_group_version(api_version)
    if not api_version:
        errs.append(required(path.child("apiVersion"), "must not be empty"))
    elif gv is None or not gv[1]:
        errs.append(invalid(path.child("apiVersion"), api_version, "must be <group>/<version> or <version>"))
    kind = _str(ref.get("kind"))
    if not kind:
        errs.append(required(path.child("kind"), "must not be empty"))
    if not _str(ref.get("name")):
        errs.append(required(path.child("name"), "must not be empty"))
    if not _str(ref.get("uid")):
        errs.append(required(path.child("uid"), "must not be empty"))
    group, version = gv if gv is not None else ("", "")
    if (group, version, kind) in _BANNED_OWNERS:
        errs.append(invalid(path, ref, f"{group}/{version}, Kind={kind} is disallowed from being an owner"))
    return errs


def validate_owner_references(refs: Any, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    first_controller = ""
    refs_list = _list(refs)
    for i, ref in enumerate(refs_list):
        ref = _dict(ref)
        errs.extend(_validate_owner_reference(ref, path.index(i)))
        if ref.get("controller") is True:
            cur = f"{_str(ref.get('kind'))}/{_str(ref.get('name'))}"
            if first_controller:
                errs.append(invalid(path, refs_list,
                                    "Only one reference can have Controller set to true. "
                                    f'Found "true" in references for {first_controller} and {cur}'))
            else:
                first_controller = cur
    return errs


def validate_finalizer_name(name: str, path: Path) -> list[FieldError]:
    return [invalid(path, name, m) for m in is_qualified_name(name)]


def validate_finalizers(finalizers: Any, path: Path) -> list[FieldError]:
    fins = [f if isinstance(f, str) else str(f) for f in _list(finalizers)]
    errs: list[FieldError] = []
    for f in fins:
        errs.extend(validate_finalizer_name(f, path))
    if FINALIZER_ORPHAN_DEPENDENTS in fins and FINALIZER_DELETE_DEPENDENTS in fins:
        errs.append(invalid(path, fins, f"finalizer {FINALIZER_ORPHAN_DEPENDENTS} and "
                                        f"{FINALIZER_DELETE_DEPENDENTS} cannot be both set"))
    return errs


def validate_no_new_finalizers(new: Any, old: Any, path: Path) -> list[FieldError]:
    extra = sorted(set(_list(new)) - set(_list(old)), key=str)
    if extra:
        shown = "[]string{" + ", ".join(f'"{e}"' for e in extra) + "}"
        return [forbidden(path, "no new finalizers can be added if the object is being deleted, "
                                f"found new finalizers {shown}")]
    return []


def validate_object_meta(meta: dict[str, Any], namespaced: bool, name_fn: NameFunc,
                         path: Path | None = None) -> list[FieldError]:
    """ValidateObjectMetaAccessor: metadata of an object being created (after name generation)."""
    if path is None:
        path = Path("metadata")
    meta = _dict(meta)
    errs: list[FieldError] = []
    gen_name = _str(meta.get("generateName"))
    if gen_name:
        errs.extend(invalid(path.child("generateName"), gen_name, m) for m in name_fn(gen_name, True))
    name = _str(meta.get("name"))
    if not name:
        errs.append(required(path.child("name"), "name or generateName is required"))
    else:
        errs.extend(invalid(path.child("name"), name, m) for m in name_fn(name, False))
    namespace = _str(meta.get("namespace"))
    if namespaced:
        if not namespace:
            errs.append(required(path.child("namespace")))
        else:
            errs.extend(invalid(path.child("namespace"), namespace, m)
                        for m in validate_namespace_name(namespace, False))
    elif namespace:
        errs.append(forbidden(path.child("namespace"), "not allowed on this type"))
    errs.extend(validate_nonnegative_field(meta.get("generation"), path.child("generation")))
    errs.extend(validate_labels(meta.get("labels"), path.child("labels")))
    errs.extend(validate_annotations(meta.get("annotations"), path.child("annotations")))
    errs.extend(validate_owner_references(meta.get("ownerReferences"), path.child("ownerReferences")))
    errs.extend(validate_finalizers(meta.get("finalizers"), path.child("finalizers")))
    return errs


def _time_key(v: Any) -> Any:
    """Semantic equality of metav1.Time: compare instants at second precision."""
    if isinstance(v, str) and v:
        try:
            return parse_time(v).replace(microsecond=0)
        except ValueError:
            return v
    return v or None


def _time_shown(v: Any) -> Any:
    if isinstance(v, str) and v:
        try:
            return format_time(parse_time(v))
        except ValueError:
            return v
    return None if not v else v


def validate_immutable_field(new: Any, old: Any, path: Path) -> list[FieldError]:
    if new != old:
        return [invalid(path, new, FIELD_IMMUTABLE_ERROR_MSG)]
    return []


def validate_object_meta_update(new: dict[str, Any], old: dict[str, Any],
                                path: Path | None = None) -> list[FieldError]:
    """ValidateObjectMetaAccessorUpdate."""
    if path is None:
        path = Path("metadata")
    new = _dict(new)
    old = _dict(old)
    errs: list[FieldError] = []
    if old.get("deletionTimestamp"):
        errs.extend(validate_no_new_finalizers(new.get("finalizers"), old.get("finalizers"),
                                               path.child("finalizers")))
    rv = _str(new.get("resourceVersion"))
    if not rv:
        errs.append(invalid(path.child("resourceVersion"), rv, "must be specified for an update"))
    new_gen = new.get("generation") or 0
    old_gen = old.get("generation") or 0
    errs.extend(validate_nonnegative_field(new_gen, path.child("generation")))
    if isinstance(new_gen, int) and isinstance(old_gen, int) and new_gen < old_gen:
        errs.append(invalid(path.child("generation"), new_gen, "must not be decremented"))
    for key in ("name", "namespace", "uid"):
        errs.extend(validate_immutable_field(_str(new.get(key)), _str(old.get(key)), path.child(key)))
    for key in ("creationTimestamp", "deletionTimestamp"):
        if _time_key(new.get(key)) != _time_key(old.get(key)):
            errs.append(invalid(path.child(key), _time_shown(new.get(key)), FIELD_IMMUTABLE_ERROR_MSG))
    errs.extend(validate_immutable_field(new.get("deletionGracePeriodSeconds"),
                                         old.get("deletionGracePeriodSeconds"),
                                         path.child("deletionGracePeriodSeconds")))
    errs.extend(validate_labels(new.get("labels"), path.child("labels")))
    errs.extend(validate_annotations(new.get("annotations"), path.child("annotations")))
    errs.extend(validate_owner_references(new.get("ownerReferences"), path.child("ownerReferences")))
    return errs


# ---------------------------------------------------------------------------------------------
# times, UIDs, generated names
# ---------------------------------------------------------------------------------------------

RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def format_time(dt: datetime) -> str:
    """metav1.Time JSON: RFC 3339, second precision, UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(dt: datetime) -> str:
    """metav1.MicroTime JSON: RFC 3339 with 6 fractional digits, UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    return format_time(datetime.now(UTC))


def now_rfc3339_micro() -> str:
    return format_micro_time(datetime.now(UTC))


def parse_time(s: str) -> datetime:
    """Parse an RFC 3339 timestamp (as time.Parse(time.RFC3339, s)) into an aware UTC datetime."""
    m = _RFC3339_RE.fullmatch(s) if isinstance(s, str) else None
    if m is None:
        raise ValueError(f'parsing time "{s}" as "{RFC3339_LAYOUT}": cannot parse "{s}" as "2006"')
    year, month, day, hour, minute, sec = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    tz = m.group(8)
    if tz in ("Z", "z"):
        tzinfo = UTC
    else:
        sign = 1 if tz[0] == "+" else -1
        hh, mm = int(tz[1:3]), int(tz[4:6])
        if hh > 23 or mm > 59:
            raise ValueError(f'parsing time "{s}": time zone offset out of range')
        tzinfo = timezone(sign * timedelta(hours=hh, minutes=mm))
    try:
        dt = datetime(year, month, day, hour, minute, sec, micro, tzinfo=tzinfo)
    except ValueError as e:
        raise ValueError(f'parsing time "{s}": {e}') from None
    return dt.astimezone(UTC)


def new_uid() -> str:
    return str(uuid.uuid4())


GENERATE_NAME_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
MAX_NAME_LENGTH = 63
RANDOM_LENGTH = 5
MAX_GENERATED_NAME_LENGTH = MAX_NAME_LENGTH - RANDOM_LENGTH


def random_string(n: int) -> str:
    return "".join(secrets.choice(GENERATE_NAME_ALPHANUMS) for _ in range(n))


def generate_name_suffix(base: str) -> str:
    """names.SimpleNameGenerator.GenerateName: ``base[:58]`` + 5 random characters."""
    if len(base) > MAX_GENERATED_NAME_LENGTH:
        base = base[:MAX_GENERATED_NAME_LENGTH]
    return base + random_string(RANDOM_LENGTH)


generate_name = generate_name_suffix
