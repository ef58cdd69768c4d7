"""Named model sizes (recurrentgemma-style presets): :func:`get_preset` → :class:`ClassifierConfig`.

``eventssm-dvs-small``
    EventSSM's DVS128 Gesture "small" model (official EventSSM repository,
    ``configs/model/dvs/small.yaml``): d_model 128, d_ssm 128, ssm_block_size 16 (→ 8 HiPPO
    blocks), 2 stages × 3 layers, pooling_stride 16, state_expansion_factor 2, dropout 0.25,
    pooling_mode and classification_mode "timepool", conj_sym false, dt_min 0.001, dt_max 0.1,
    discretization "async".  Vocabulary 2·128·128 = 32768 and 11 classes as its DVS Gesture
    loader (``num_embeddings = prod(sensor_size)``, ``n_classes=11``).
``s7-dvs``
    The S7 repository's DVS Gesture model (``configs/model/dvs/small.yaml`` of
    github.com/TaylanSoydan/S7): d_model 16, d_ssm 16, ssm_block_size 16 (→ 1 block), 2 stages
    × 3 layers, pooling_stride 16, state_expansion_factor 2, dropout 0.25, "timepool" pooling and
    head, conj_sym false, dt_min 0.001, dt_max 0.1.
``tiny``
    A few-thousand-parameter model for tests: d_model 8, d_state 8 (2 blocks), 2 stages × 2
    layers, stride 4, expansion 2, chunked scan (cheapest to compile on CPU).

Every preset can be built with S5, S7 or paper-form S7 layers (``layer=`` "s5", "s7",
"s7paper"); other fields can be overridden.
The DVS presets default to ``remat=True``, ``remat_blocks=True`` and the "auto" scan
(sequential on CPU, associative on GPU/TPU), the fastest and lightest settings measured on
CPU (benchmarks/RESULTS.md); none of them changes the model's function.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from eventssm.models.classifier import ClassifierConfig

__all__ = ["PRESETS", "get_preset"]

_DVS_COMMON = dict(
    n_stages=2,
    layers_per_stage=3,
    stride=16,
    expansion=2,
    dropout=0.25,
    head="time_weighted",
    pool_mode="time_weighted",
    conj_sym=False,
    dt_min=1e-3,
    dt_max=1e-1,
    discretization="async",
    vocab_size=2 * 128 * 128,
    n_classes=11,
    # not a model hyper-parameter: recompute the event-rate stage in the backward pass; on CPU
    # this is both faster and lighter (benchmarks/results/model.md: batch 8 × 65,536, S5,
    # 137 k vs 57 k tokens/s training, 2.9 vs 5.2 GiB peak RSS).
    remat=True,
    # also recompute the pooled-rate blocks, time chunk by time chunk: at batch 8 × 65,536 the
    # S7 training step peaks at 2.4 instead of 4.3 GiB RSS, S5 at 1.8 instead of 2.5 GiB, and
    # both train as fast or faster (benchmarks/RESULTS.md, 2026-12-04).
    remat_blocks=True,
    # sequential lax.scan on CPU (eventssm-dvs-small S5 training step at batch 8 × 65,536:
    # 254 k vs 192 k tokens/s with "chunked", 2026-12-04), associative on accelerators
    scan_method="auto",
)

#: name -> ClassifierConfig fields (read-only); ``layer`` and the task sizes come from get_preset.
PRESETS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        "tiny": MappingProxyType(
            dict(
                d_model=8,
                d_state=8,
                blocks=2,
                n_stages=2,
                layers_per_stage=2,
                stride=4,
                expansion=2,
                dropout=0.1,
                head="time_weighted",
                pool_mode="time_weighted",
                conj_sym=False,
                dt_min=1e-3,
                dt_max=1e-1,
                vocab_size=2 * 8 * 8,
                n_classes=5,
                scan_method="chunked",
            )
        ),
        "eventssm-dvs-small": MappingProxyType(
            dict(_DVS_COMMON, d_model=128, d_state=128, blocks=8)
        ),
        "s7-dvs": MappingProxyType(dict(_DVS_COMMON, d_model=16, d_state=16, blocks=1)),
    }
)


def get_preset(
    name: str,
    layer: str = "s7",
    *,
    vocab_size: int | None = None,
    n_classes: int | None = None,
    **overrides: Any,
) -> ClassifierConfig:
    """Config of a named preset.

    Args:
        name: one of ``PRESETS`` ("tiny", "eventssm-dvs-small", "s7-dvs").
        layer: "s7", "s5" or "s7paper".
        vocab_size: token vocabulary (2·W·H); the preset's default when None.
        n_classes: number of classes; the preset's default when None.
        **overrides: any other ClassifierConfig field (e.g. scan_method, dropout, remat).
    Returns:
        A validated, frozen ClassifierConfig.
    Raises:
        ValueError: unknown preset name or invalid field values.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    fields = dict(PRESETS[name])
    fields["layer"] = layer
    if vocab_size is not None:
        fields["vocab_size"] = int(vocab_size)
    if n_classes is not None:
        fields["n_classes"] = int(n_classes)
    fields.update(overrides)
    return ClassifierConfig(**fields)
