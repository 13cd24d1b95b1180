"""Each adversarial loss against its closed form on hand-made logits."""
import math

import pytest
import torch

from gankit.losses import LOSSES

REAL = torch.tensor([2.0, -1.0, 0.5, 30.0])   # 30 checks numerical stability far in the tail
FAKE = torch.tensor([-3.0, 0.0, 1.5, -30.0])


def sig(t):
    return 1 / (1 + math.exp(-t))


def log(p):
    return math.log(p) if p > 0 else -1e300


def mean(xs):
    return sum(xs) / len(xs)


# Closed forms written with probabilities D = σ(logit), as in the papers.
CLOSED = {
    "minimax": (lambda r, f: -mean([math.log(sig(t)) for t in r]) - mean([-math.log1p(math.exp(t)) for t in f]),
                lambda f: mean([-math.log1p(math.exp(t)) for t in f])),  # log(1 - σ(t)) = -log(1 + e^t)
    "non-saturating": (lambda r, f: -mean([math.log(sig(t)) for t in r]) - mean([-math.log1p(math.exp(t)) for t in f]),
                       lambda f: -mean([-math.log1p(math.exp(-t)) for t in f])),
    "least-squares": (lambda r, f: 0.5 * mean([(t - 1) ** 2 for t in r]) + 0.5 * mean([t ** 2 for t in f]),
                      lambda f: 0.5 * mean([(t - 1) ** 2 for t in f])),
    "hinge": (lambda r, f: mean([max(0, 1 - t) for t in r]) + mean([max(0, 1 + t) for t in f]),
              lambda f: -mean(f)),
    "wasserstein": (lambda r, f: mean(f) - mean(r), lambda f: -mean(f)),
    # Jolicoeur-Martineau 2019: D of the difference of critic outputs; G's loss also takes the reals
    "relativistic": (lambda r, f: -mean([math.log(sig(a - b)) for a, b in zip(r, f)]),
                     lambda r, f: -mean([math.log(sig(b - a)) for a, b in zip(r, f)])),
    "relativistic-average": (lambda r, f: -mean([math.log(sig(a - mean(f))) for a in r])
                             + mean([math.log1p(math.exp(b - mean(r))) for b in f]),   # -log(1 - σ(t))
                             lambda r, f: -mean([math.log(sig(b - mean(r))) for b in f])
                             + mean([math.log1p(math.exp(a - mean(f))) for a in r])),
}
RELATIVE = {"relativistic", "relativistic-average"}


def test_every_registered_loss_has_a_closed_form_here():
    assert set(LOSSES.names()) == set(CLOSED)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_matches_closed_form(name):
    loss = LOSSES.get(name)
    d_ref, g_ref = CLOSED[name]
    r, f = REAL.tolist(), FAKE.tolist()
    assert loss.d(REAL, FAKE).item() == pytest.approx(d_ref(r, f), rel=1e-6, abs=1e-6)
    assert loss.relativistic == (name in RELATIVE)
    g_args = (r, f) if loss.relativistic else (f,)
    assert loss.g_loss(FAKE, REAL).item() == pytest.approx(g_ref(*g_args), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_is_finite_with_finite_gradients_for_extreme_logits(name):
    r = torch.tensor([100.0, -100.0], requires_grad=True)
    f = torch.tensor([100.0, -100.0], requires_grad=True)
    loss = LOSSES.get(name)
    total = loss.d(r, f) + loss.g_loss(f, r)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(r.grad).all() and torch.isfinite(f.grad).all()


def test_minimax_saturates_and_non_saturating_does_not():
    # When D confidently rejects fakes (logit -10), the minimax G gradient nearly vanishes;
    # the non-saturating one stays near 1 (Goodfellow et al. 2014, Sec. 3).
    f = torch.tensor([-10.0], requires_grad=True)
    LOSSES.get("minimax").g(f).backward()
    g_minimax = f.grad.abs().item()
    f.grad = None
    LOSSES.get("non-saturating").g(f).backward()
    assert g_minimax < 1e-4
    assert f.grad.abs().item() > 0.99


def test_d_accuracy_threshold():
    assert LOSSES.get("least-squares").says_real(torch.tensor([0.6, 0.4])).tolist() == [True, False]
    assert LOSSES.get("non-saturating").says_real(torch.tensor([0.1, -0.1])).tolist() == [True, False]
