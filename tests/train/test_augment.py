"""Training-time augmentation of token samples: exact round trip, properties of the recipes and
CutMix, and its use by ``batches`` and ``fit``."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventssm.events import make_events
from eventssm.tokenizers import transforms as T
from eventssm.tokenizers.functional import tokenize, vocab_size
from eventssm.train import TrainConfig, batches, fit
from eventssm.train.augment import RECIPES, TokenAugment, recipe


def _stream(rng, n, w, h, max_gap_us):
    t = np.cumsum(rng.integers(0, max_gap_us + 1, n)) + int(rng.integers(0, 10**9))
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.random(n) < 0.5)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), st.integers(1, 40), st.integers(1, 30), st.sampled_from(["us", "ms", "s"]),
       st.booleans(), st.integers(0, 2**31))
def test_events_of_tokens_give_back_the_same_tokens_and_dt(n, w, h, unit, merge, seed):
    """tokenize ∘ events is the identity on tokenizer output (gaps up to 10 s); the events are
    the tokenized ones with t shifted to start at 0 (polarity dropped when merged)."""
    rng = np.random.default_rng(seed)
    ev = _stream(rng, n, w, h, 10_000_000)
    tokens, dt = tokenize(ev, (w, h), merge_polarity=merge, time_unit=unit)
    aug = TokenAugment((w, h, 1 if merge else 2), unit)
    back = aug.events(tokens, dt)
    assert np.array_equal(back["x"], ev["x"]) and np.array_equal(back["y"], ev["y"])
    assert np.array_equal(back["t"], ev["t"] - (ev["t"][0] if n else 0))
    assert np.array_equal(back["p"], ev["p"] & (not merge))
    tok2, dt2 = aug.tokens(back)
    assert np.array_equal(tok2, tokens) and np.array_equal(dt2, dt)


def _samples(rng, k=4, grid=(16, 12)):
    out = []
    for _ in range(k):
        ev = _stream(rng, int(rng.integers(50, 400)), *grid, 3000)
        out.append(tokenize(ev, grid))
    return out


def test_inactive_augment_returns_the_batch_unchanged():
    seqs = _samples(np.random.default_rng(0))
    aug = TokenAugment((16, 12, 2), "ms")
    assert not aug.active
    out, labels = aug.batch(seqs, [0, 1, 0, 1], np.random.default_rng(1))
    assert all(a is x and b is y for (a, b), (x, y) in zip(out, seqs, strict=True))
    assert labels.dtype == np.int32 and labels.tolist() == [0, 1, 0, 1]


def _is_subsequence(tok2, t2, tok, t) -> bool:
    """Whether the (token, time) pairs of the output appear in order among the input's."""
    pairs = iter(zip(tok.tolist(), t.tolist(), strict=True))
    return all(any(p == q for q in pairs) for p in zip(tok2.tolist(), t2.tolist(), strict=True))


def test_drop_keeps_an_ordered_subset_with_the_original_times():
    """DropEvent alone: each output is a subsequence of its input (tokens and absolute times)."""
    seqs = _samples(np.random.default_rng(2))
    aug = TokenAugment((16, 12, 2), "ms", T.Compose((T.DropEvent(0.3),)))
    out, _ = aug.batch(seqs, [0] * 4, np.random.default_rng(3))
    for (tok, dt), (tok2, dt2) in zip(seqs, out, strict=True):
        t = aug.events(tok, dt)["t"]
        t2 = aug.events(tok2, dt2)["t"]
        # the output's times start at 0: try each input event that could be the first kept one
        starts = [i for i in range(len(tok)) if tok[i] == tok2[0]]
        assert any(_is_subsequence(tok2, t2 + t[i0], tok[i0:], t[i0:]) for i0 in starts)
        assert 0.4 * len(tok) < len(tok2) < len(tok)


@pytest.mark.parametrize("name", RECIPES[1:])
def test_recipes_stay_on_the_grid_and_follow_the_seed(name):
    grid = (16, 12, 2)
    seqs = _samples(np.random.default_rng(4), grid=grid[:2])
    aug = TokenAugment(grid, "ms", recipe(name, grid))
    a, _ = aug.batch(seqs, [0] * 4, np.random.default_rng(5))
    b, _ = aug.batch(seqs, [0] * 4, np.random.default_rng(5))
    c, _ = aug.batch(seqs, [0] * 4, np.random.default_rng(6))
    vocab = vocab_size(grid[:2])
    for (t1, d1), (t2, d2), (t3, _), (t0, _) in zip(a, b, c, seqs, strict=True):
        assert np.array_equal(t1, t2) and np.array_equal(d1, d2)
        assert not np.array_equal(t1, t3)
        assert t1.dtype == np.int32 and d1.dtype == np.float32
        assert t1.min() >= 0 and t1.max() < vocab and (d1 >= 0).all() and d1[0] == 0
        # basic drops 10 %; geometric up to 50 %, and shifts, turns and zooms events off the grid
        assert (0.5 if name == "basic" else 0.25) * len(t0) < len(t1) <= len(t0)
    with pytest.raises(ValueError, match="augmentation must be one of"):
        recipe("flip", grid)


def test_cutmix_mixes_labels_by_the_share_of_events():
    grid = (16, 12, 2)
    rng = np.random.default_rng(7)
    # class 0 only on the left half of the grid, class 1 only on the right half
    seqs = []
    for label in (0, 1, 0, 1):
        ev = _stream(rng, 300, 8, 12, 2000)
        ev["x"] += 8 * label
        seqs.append(tokenize(ev, grid[:2]))
    aug = TokenAugment(grid, "ms", None, cutmix=1.0, n_classes=3)
    out, soft = aug.batch(seqs, [0, 1, 0, 1], np.random.default_rng(8))
    assert soft.shape == (4, 3) and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)
    assert (soft[:, 2] == 0).all()
    for (tok, _), w in zip(out, soft, strict=True):
        x = (tok // 2) // grid[1]
        right = np.mean(x >= 8)  # share of events from class 1
        np.testing.assert_allclose(w[1], right, atol=1e-6)
    assert ((soft > 0) & (soft < 1)).any()  # something was mixed
    with pytest.raises(ValueError, match="n_classes"):
        TokenAugment(grid, "ms", None, cutmix=0.5)


def test_batches_apply_the_augment_after_the_crop():
    seqs = _samples(np.random.default_rng(9), k=6)
    data = [(tok, dt, i % 2) for i, (tok, dt) in enumerate(seqs)]
    aug = TokenAugment((16, 12, 2), "ms", recipe("basic", (16, 12)), cutmix=0.5, n_classes=2)
    got = list(batches(data, 3, np.random.default_rng(0), crop_events=40, buckets=(64,), augment=aug))
    assert len(got) == 2
    for b in got:
        assert b.labels.shape == (3, 2) and b.tokens.shape == (3, 64)
        assert (b.lengths <= 40).all() and (b.lengths > 0).all()
    with pytest.raises(ValueError, match="augment"):
        next(batches(data, 3, None, shuffle=False, augment=aug))


def test_fit_augmentation_needs_the_grid_and_rejects_unknown_recipes():
    data = [(np.zeros(8, np.int32), np.zeros(8, np.float32), 0)] * 2
    model = SimpleNamespace(config=SimpleNamespace(n_classes=2))
    with pytest.raises(ValueError, match="TokenDataset"):
        fit(model, data, TrainConfig(steps=1, augment="basic"))
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="flip")
    with pytest.raises(ValueError, match="cutmix"):
        TrainConfig(cutmix=1.5)
    cfg = TrainConfig(augment="geometric", cutmix=0.25)
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_geometric_varies_the_event_density_and_the_time_scale():
    """``geometric`` draws its drop share from 0-50 % and its time stretch from 0.67-1.5 per
    sample: over many draws of one sample the kept share and the duration spread over those
    ranges (``basic`` keeps 90 % and 0.9-1.1)."""
    grid = (64, 64)
    rng = np.random.default_rng(7)
    n = 4000
    t = np.cumsum(rng.integers(1, 200, n))
    ev = make_events(rng.integers(24, 40, n), rng.integers(24, 40, n), t, rng.random(n) < 0.5)
    ops = recipe("geometric", grid).transforms
    drop = next(op for op in ops if isinstance(op, T.DropEvent))
    skew = next(op for op in ops if isinstance(op, T.TimeSkew))
    kept = np.array([len(drop(ev, rng)) / n for _ in range(300)])
    assert kept.min() < 0.55 and kept.max() > 0.95 and kept.min() > 0.45
    span = [(lambda e: (e["t"][-1] - e["t"][0]) / (t[-1] - t[0]))(skew(ev, rng)) for _ in range(300)]
    assert 0.66 < min(span) < 0.72 and 1.45 < max(span) < 1.51
    basic = next(op for op in recipe("basic", grid).transforms if isinstance(op, T.DropEvent))
    assert basic.p == 0.1
