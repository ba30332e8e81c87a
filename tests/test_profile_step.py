"""benchmarks.profile_step: op names land in the right kind, and grouping adds self time."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks import profile_step as ps


def test_op_names_map_to_their_kind():
    assert ps.kind_of("mkldnn::_linear_pointwise") == "matmul"
    assert ps.kind_of("aten::addmm") == "matmul"  # not "elementwise" through "add"
    assert ps.kind_of("aten::baddbmm") == "matmul"  # attention's scores (kernels._scaled_bmm): was "other"
    assert ps.kind_of("aten::_softmax_backward_data") == "attention"
    assert ps.kind_of("aten::_log_softmax_backward_data") == "loss"  # not "attention"
    assert ps.kind_of("aten::_fused_adamw_") == "optimizer"
    assert ps.kind_of("aten::random_") == "rng"
    assert ps.kind_of("aten::native_layer_norm_backward") == "layernorm"
    assert ps.kind_of("aten::add_") == "elementwise"
    assert ps.kind_of("aten::_to_copy") == "copy/cast"
    assert ps.kind_of("aten::something_new") == "other"


def test_grouped_sums_self_time_per_kind_largest_first():
    events = [SimpleNamespace(key="aten::mm", self_cpu_time_total=3e6),
              SimpleNamespace(key="aten::bmm", self_cpu_time_total=1e6),
              SimpleNamespace(key="aten::gelu", self_cpu_time_total=5e6)]
    assert ps.grouped(events) == {"gelu": 5.0, "matmul": 4.0}
    assert list(ps.grouped(events)) == ["gelu", "matmul"]
