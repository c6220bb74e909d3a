"""Bad values that Go's field.Error prints with ``%#v`` (internal API structs, maps, IntOrString):
wrappers whose ``str()`` is what the apiserver shows, e.g.
``Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels```."""

from __future__ import annotations

from typing import Any

from kubelite.api.field import go_quote


class GoValue:
    """A value with a fixed Go rendering."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"


def string_map(m: Any) -> str:
    """%#v of a map[string]string (nil when absent; keys sorted, as fmt prints maps)."""
    if not isinstance(m, dict):
        return "map[string]string(nil)"
    inner = ", ".join(f"{go_quote(str(k))}:{go_quote(str(v))}" for k, v in sorted(m.items()))
    return "map[string]string{" + inner + "}"


def _string_slice(v: Any) -> str:
    if not isinstance(v, list):
        return "[]string(nil)"
    return "[]string{" + ", ".join(go_quote(str(x)) for x in v) + "}"


def label_selector(sel: Any) -> GoValue:
    """%#v of a metav1.LabelSelector (the pointer's element, as field.Error dereferences it)."""
    if not isinstance(sel, dict):
        return GoValue("null")
    exprs = sel.get("matchExpressions")
    if isinstance(exprs, list):
        items = []
        for e in exprs:
            e = e if isinstance(e, dict) else {}
            items.append(f"v1.LabelSelectorRequirement{{Key:{go_quote(str(e.get('key') or ''))}, "
                         f"Operator:{go_quote(str(e.get('operator') or ''))}, Values:{_string_slice(e.get('values'))}}}")
        ex = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    else:
        ex = "[]v1.LabelSelectorRequirement(nil)"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{string_map(sel.get('matchLabels'))}, MatchExpressions:{ex}}}")


def int_or_string(v: Any) -> GoValue:
    """%#v of an intstr.IntOrString."""
    if isinstance(v, str):
        return GoValue(f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(v)}}}")
    n = v if isinstance(v, int) and not isinstance(v, bool) else 0
    return GoValue(f'intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:""}}')


def _pointer(v: Any, type_name: str) -> str:
    return f"(*{type_name})(nil)" if v is None else f"(*{type_name})(0xc000000000)"


def deployment_strategy(strategy: Any) -> GoValue:
    """%#v of an apps.DeploymentStrategy (a set pointer prints as an address in Go)."""
    s = strategy if isinstance(strategy, dict) else {}
    return GoValue(f"apps.DeploymentStrategy{{Type:{go_quote(str(s.get('type') or ''))}, "
                   f"RollingUpdate:{_pointer(s.get('rollingUpdate'), 'apps.RollingUpdateDeployment')}}}")


def statefulset_strategy(strategy: Any) -> GoValue:
    """%#v of an apps.StatefulSetUpdateStrategy."""
    s = strategy if isinstance(strategy, dict) else {}
    return GoValue(f"apps.StatefulSetUpdateStrategy{{Type:{go_quote(str(s.get('type') or ''))}, "
                   f"RollingUpdate:{_pointer(s.get('rollingUpdate'), 'apps.RollingUpdateStatefulSetStrategy')}}}")


def rolling_update_statefulset(ru: Any) -> GoValue:
    """%#v of an apps.RollingUpdateStatefulSetStrategy (the pointer's element)."""
    r = ru if isinstance(ru, dict) else {}
    part = r.get("partition")
    part = part if isinstance(part, int) and not isinstance(part, bool) else 0
    return GoValue(f"apps.RollingUpdateStatefulSetStrategy{{Partition:{part}, "
                   f"MaxUnavailable:{_pointer(r.get('maxUnavailable'), 'intstr.IntOrString')}}}")


def daemonset_strategy(strategy: Any) -> GoValue:
    """%#v of an apps.DaemonSetUpdateStrategy."""
    s = strategy if isinstance(strategy, dict) else {}
    return GoValue(f"apps.DaemonSetUpdateStrategy{{Type:{go_quote(str(s.get('type') or ''))}, "
                   f"RollingUpdate:{_pointer(s.get('rollingUpdate'), 'apps.RollingUpdateDaemonSet')}}}")


__all__ = ["GoValue", "daemonset_strategy", "deployment_strategy", "rolling_update_statefulset",
           "statefulset_strategy", "int_or_string", "label_selector", "string_map"]
