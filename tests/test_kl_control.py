"""The KL coefficient controller (starling_lib.policy.kl_control) by hand: Ziegler et al. 2019, Sec. 2.2."""

import pytest

from starling_lib.policy.kl_control import KLController


def test_fixed_coefficient_never_moves():
    fixed = KLController(0.05)
    assert not fixed.adaptive
    assert fixed.update(100.0, 64) == 0.05 and fixed.update(0.0, 64) == 0.05


def test_adaptive_updates_by_hand():
    ctl = KLController(0.1, target=6.0, horizon=100)
    # KL 9 nats: e = (9 − 6)/6 = 0.5, clipped to 0.2; K_β = 10/100: β = 0.1 · (1 + 0.2 · 0.1) = 0.102.
    assert ctl.update(9.0, 10) == pytest.approx(0.102, abs=1e-15)
    # KL 5.4: e = −0.1, inside the clip: β = 0.102 · (1 − 0.1 · 0.1) = 0.10098.
    assert ctl.update(5.4, 10) == pytest.approx(0.10098, abs=1e-15)
    # KL 0 over 20 responses: e = −1 clipped to −0.2, K_β = 0.2: β = 0.10098 · 0.96.
    assert ctl.update(0.0, 20) == pytest.approx(0.10098 * 0.96, abs=1e-15)
    # On target: e = 0, β stays.
    before = ctl.value
    assert ctl.update(6.0, 10) == before


def test_state_dict_resumes_the_same_sequence():
    kls = [9.0, 5.4, 0.0, 7.0, 6.5]
    whole = KLController(0.1, target=6.0, horizon=100)
    for kl in kls:
        whole.update(kl, 10)
    first = KLController(0.1, target=6.0, horizon=100)
    for kl in kls[:2]:
        first.update(kl, 10)
    resumed = KLController(0.1, target=6.0, horizon=100)
    resumed.load_state_dict(first.state_dict())
    for kl in kls[2:]:
        resumed.update(kl, 10)
    assert resumed.value == whole.value != 0.1


def test_resuming_with_other_settings_fails_and_a_fixed_beta_is_the_setting():
    state = KLController(0.1, target=6.0, horizon=100).state_dict()
    with pytest.raises(ValueError, match="kl_target=6.0, this run has policy.kl_target=3.0"):
        KLController(0.1, target=3.0, horizon=100).load_state_dict(state)
    with pytest.raises(ValueError, match="kl_horizon"):
        KLController(0.1, target=6.0, horizon=50).load_state_dict(state)
    with pytest.raises(ValueError, match="kl_target=6.0, this run has policy.kl_target=None"):
        KLController(0.1).load_state_dict(state)
    fixed = KLController(0.2)
    fixed.load_state_dict({"kl_coef": 0.05, "kl_target": None, "kl_horizon": 10000})
    assert fixed.value == 0.2


@pytest.mark.parametrize("args", [(-0.1,), (0.1, 0.0), (0.1, float("nan")), (0.1, 6.0, 0)])
def test_bad_settings_are_refused(args):
    with pytest.raises(ValueError):
        KLController(*args)
