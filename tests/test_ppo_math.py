"""PPO math against values computed by hand (the arithmetic is in the comments), and padding that must not leak."""

from __future__ import annotations

import math

import pytest
import torch

from apirl.train.ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_penalty,
    last_token_index,
    leave_one_out,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)

NAN, INF = math.nan, math.inf


def t(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def close(actual: torch.Tensor, expected: list | float, tol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=0, atol=tol)


# ---------------------------------------------------------------------------------------------------------------
# Masked statistics


def test_masked_mean_ignores_padding_even_inf_and_nan() -> None:
    x = t([[1.0, 2.0, 3.0], [4.0, INF, NAN]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    close(masked_mean(x, mask), 2.5)  # (1 + 2 + 3 + 4) / 4
    close(masked_mean(x, mask, dim=1), [2.0, 4.0])  # (1 + 2 + 3) / 3, 4 / 1
    close(masked_mean(x, mask.bool()), 2.5)


def test_masked_mean_gradient_is_zero_and_finite_on_padding() -> None:
    x = t([[1.0, 2.0, INF]]).requires_grad_()
    masked_mean(x, t([[1, 1, 0]])).backward()
    close(x.grad, [[0.5, 0.5, 0.0]])  # d/dx_i (x_0 + x_1) / 2


def test_masked_mean_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        masked_mean(t([[1.0, 2.0]]), t([1, 1]))


def test_masked_var_biased_and_unbiased_by_hand() -> None:
    x = t([[1.0, 2.0, 100.0], [3.0, 4.0, -7.0]])
    mask = t([[1, 1, 0], [1, 1, 0]])
    # real entries 1, 2, 3, 4: mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5
    close(masked_var(x, mask, unbiased=False), 5 / 4)
    close(masked_var(x, mask), 5 / 3)


def test_masked_var_undefined_cases_raise() -> None:
    x = t([[1.0, 2.0]])
    with pytest.raises(ValueError, match="2 or more"):
        masked_var(x, t([[1, 0]]))
    with pytest.raises(ValueError, match="1 or more"):
        masked_var(x, t([[0, 0]]), unbiased=False)
    close(masked_var(x, t([[1, 0]]), unbiased=False), 0.0)


def test_masked_whiten_by_hand_and_padding_stays_zero() -> None:
    x = t([[1.0, 2.0, 55.0], [3.0, 4.0, NAN]])
    mask = t([[1, 1, 0], [1, 1, 0]])
    # mean 2.5, unbiased var 5/3, std sqrt(5/3) = 1.2909944; (x - 2.5) / std for x = 1, 2, 3, 4:
    std = math.sqrt(5 / 3)
    expected = [[-1.5 / std, -0.5 / std, 0.0], [0.5 / std, 1.5 / std, 0.0]]  # -1.161895, -0.387298, ...
    out = masked_whiten(x, mask)
    close(out, expected)
    close(masked_mean(out, mask), 0.0)
    close(masked_var(out, mask), 1.0)


def test_masked_whiten_without_shift_keeps_the_mean() -> None:
    x = t([[1.0, 2.0, 55.0], [3.0, 4.0, NAN]])
    mask = t([[1, 1, 0], [1, 1, 0]])
    std = math.sqrt(5 / 3)
    # (x - 2.5) / std + 2.5: 1.338105, 2.112702, 2.887298, 3.661895
    expected = [[-1.5 / std + 2.5, -0.5 / std + 2.5, 0.0], [0.5 / std + 2.5, 1.5 / std + 2.5, 0.0]]
    out = masked_whiten(x, mask, shift_mean=False)
    close(out, expected)
    close(masked_mean(out, mask), 2.5)
    close(masked_var(out, mask), 1.0)


def test_masked_whiten_padding_values_change_nothing_and_input_is_untouched() -> None:
    mask = t([[1, 1, 0], [1, 1, 1]])
    a = t([[1.0, 5.0, 0.0], [2.0, -3.0, 4.0]])
    b = a.clone()
    b[0, 2] = 1e6
    before = b.clone()
    close(masked_whiten(a, mask), masked_whiten(b, mask).tolist())
    assert torch.equal(b, before)


def test_masked_whiten_gradient_is_finite_with_inf_on_padding() -> None:
    x = t([[1.0, 2.0, INF], [3.0, 4.0, NAN]]).requires_grad_()
    mask = t([[1, 1, 0], [1, 1, 0]])
    (masked_whiten(x, mask) * t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    close(x.grad[:, 2], [0.0, 0.0])
    close(masked_var(x, mask), 5 / 3)


# ---------------------------------------------------------------------------------------------------------------
# KL estimators


def test_kl_estimators_on_known_pairs() -> None:
    logp = t([math.log(0.5), math.log(0.25), math.log(0.3)])
    ref = t([math.log(0.25), math.log(0.5), math.log(0.3)])
    ln2 = math.log(2)  # 0.693147
    # token 0: logp - ref = ln 2, r = ref - logp = -ln 2, exp(r) = 0.5
    # token 1: logp - ref = -ln 2, r = ln 2, exp(r) = 2; token 2: equal log-probs
    close(kl_penalty(logp, ref, "k1"), [ln2, -ln2, 0.0])
    close(kl_penalty(logp, ref, "k2"), [0.5 * ln2**2, 0.5 * ln2**2, 0.0])  # 0.240227
    close(kl_penalty(logp, ref, "k3"), [0.5 + ln2 - 1, 2 - ln2 - 1, 0.0])  # 0.193147, 0.306853


def test_k1_and_k3_are_unbiased_for_the_exact_kl() -> None:
    # policy p = (0.5, 0.5), reference q = (0.25, 0.75): KL(p || q) = 0.5 ln 2 + 0.5 ln(2/3) = 0.143841
    p, q = t([0.5, 0.5]), t([0.25, 0.75])
    exact = 0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75)
    assert exact == pytest.approx(0.143841, abs=1e-6)
    for kind in ("k1", "k3"):
        close((p * kl_penalty(p.log(), q.log(), kind)).sum(), exact)  # E_{x ~ p}[k(x)]
    # k2 is biased: 0.5 * (0.5 * ln(2)^2 + 0.5 * ln(2/3)^2) = 0.5 * (0.240227 + 0.082202) = 0.161214
    close((p * kl_penalty(p.log(), q.log(), "k2")).sum(), 0.161214)


def test_k3_is_non_negative_and_exact_for_tiny_differences() -> None:
    gen = torch.Generator().manual_seed(0)
    logp, ref = -5 * torch.rand(1000, generator=gen), -5 * torch.rand(1000, generator=gen)
    assert bool((kl_penalty(logp, ref, "k3") >= 0).all())
    # r = 1e-10: exp(r) - r - 1 = r^2 / 2 + O(r^3) = 5e-21, lost entirely by a naive exp(r) - 1 - r in float64
    tiny = kl_penalty(t([0.0]), t([1e-10]), "k3")
    assert tiny.item() == pytest.approx(5e-21, rel=1e-6, abs=1e-30)


def test_kl_penalty_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(t([0.0]), t([0.0]), "k4")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Rewards


def test_token_rewards_places_score_on_last_real_token_and_penalises_unended_rows() -> None:
    score = t([2.0, 1.0])
    kl = t([[0.1, 0.2, NAN], [0.4, 0.5, 0.6]])
    mask = t([[1, 1, 0], [1, 1, 1]])
    ended = torch.tensor([True, False])
    out = token_rewards(score, kl, mask, kl_coef=0.5, eos_missing_penalty=0.5, ended=ended)
    # row 0 ended: -0.5 * 0.1 = -0.05; -0.5 * 0.2 + 2.0 = 1.9; padding 0
    # row 1 cut off: -0.2; -0.25; -0.3 + (1.0 - 0.5) = 0.2
    close(out, [[-0.05, 1.9, 0.0], [-0.2, -0.25, 0.2]])


def test_token_rewards_without_penalty_and_inputs_untouched() -> None:
    score, kl, mask = t([3.0]), t([[1.0, 2.0, 7.0]]), t([[1, 0, 0]])
    before = (score.clone(), kl.clone(), mask.clone())
    close(token_rewards(score, kl, mask, kl_coef=0.1), [[-0.1 + 3.0, 0.0, 0.0]])
    assert all(torch.equal(a, b) for a, b in zip((score, kl, mask), before, strict=True))


def test_token_rewards_refuses_a_penalty_without_ended_and_empty_rows() -> None:
    with pytest.raises(ValueError, match="ended"):
        token_rewards(t([1.0]), t([[0.0]]), t([[1]]), kl_coef=0.1, eos_missing_penalty=1.0)
    with pytest.raises(ValueError, match=r"rows without any real response token: \[1\]"):
        token_rewards(t([1.0, 1.0]), t([[0.0, 0.0], [0.0, 0.0]]), t([[1, 0], [0, 0]]), kl_coef=0.1)
    with pytest.raises(ValueError, match="score must be"):
        token_rewards(t([1.0, 2.0]), t([[0.0]]), t([[1]]), kl_coef=0.1)


def test_leave_one_out_subtracts_the_mean_of_the_other_responses() -> None:
    # prompt 1: 1 - (2 + 6) / 2 = -3; 2 - (1 + 6) / 2 = -1.5; 6 - (1 + 2) / 2 = 4.5
    # prompt 2: 0 - (0 + 3) / 2 = -1.5; again -1.5; 3 - 0 = 3
    close(leave_one_out(t([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), 3), [-3.0, -1.5, 4.5, -1.5, -1.5, 3.0])
    close(leave_one_out(t([5.0, 5.0]), 2), [0.0, 0.0])  # equal scores: nothing to learn from
    for score, size in ((t([1.0, 2.0, 3.0]), 2), (t([1.0, 2.0]), 1), (t([[1.0, 2.0]]), 2)):
        with pytest.raises(ValueError, match="multiple of group_size"):
            leave_one_out(score, size)


def test_last_token_index_handles_any_mask_layout() -> None:
    close(last_token_index(t([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])), [1, 3, 2])


# ---------------------------------------------------------------------------------------------------------------
# GAE


def test_gae_gamma_1_lam_1_is_return_to_go_minus_value() -> None:
    rewards, values, mask = t([[0.1, -0.2, 1.0]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # returns-to-go: 0.1 - 0.2 + 1.0 = 0.9; -0.2 + 1.0 = 0.8; 1.0 (terminal value 0)
    close(ret, [[0.9, 0.8, 1.0]])
    close(adv, [[0.9 - 0.5, 0.8 - 0.6, 1.0 - 0.7]])  # 0.4, 0.2, 0.3


def test_gae_gamma_09_lam_095_by_hand() -> None:
    rewards, values, mask = t([[0.1, -0.2, 1.0]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.95)
    # gamma * lam = 0.855
    # t=2: delta = 1.0 + 0.9 * 0 - 0.7 = 0.3;            A2 = 0.3
    # t=1: delta = -0.2 + 0.9 * 0.7 - 0.6 = -0.17;       A1 = -0.17 + 0.855 * 0.3 = 0.0865
    # t=0: delta = 0.1 + 0.9 * 0.6 - 0.5 = 0.14;         A0 = 0.14 + 0.855 * 0.0865 = 0.2139575
    close(adv, [[0.2139575, 0.0865, 0.3]])
    close(ret, [[0.7139575, 0.6865, 1.0]])  # A + V


def test_gae_batch_with_padding_is_terminal_at_the_last_real_token() -> None:
    rewards = t([[0.1, -0.2, 1.0], [0.1, 0.5, 999.0]])
    values = t([[0.5, 0.6, 0.7], [0.5, 0.6, 50.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.95)
    # row 1, t=1: delta = 0.5 + 0.9 * 0 - 0.6 = -0.1 (not 0.9 * 50 from the padding); A1 = -0.1
    #        t=0: delta = 0.1 + 0.9 * 0.6 - 0.5 = 0.14; A0 = 0.14 + 0.855 * -0.1 = 0.0545
    close(adv, [[0.2139575, 0.0865, 0.3], [0.0545, -0.1, 0.0]])
    close(ret, [[0.7139575, 0.6865, 1.0], [0.5545, 0.5, 0.0]])


def test_gae_padding_values_and_rewards_change_nothing() -> None:
    mask = t([[1, 1, 0, 0], [1, 1, 1, 1]])
    rewards = t([[0.3, 1.0, 0.0, 0.0], [0.0, 0.2, -0.1, 2.0]])
    values = t([[0.1, 0.4, 0.0, 0.0], [0.3, 0.2, 0.5, 0.9]])
    base = gae(rewards, values, mask, gamma=0.95, lam=0.9)
    garbage_r, garbage_v = rewards.clone(), values.clone()
    garbage_r[0, 2:] = t([NAN, 1e9])
    garbage_v[0, 2:] = t([INF, -3.0])
    for got, want in zip(gae(garbage_r, garbage_v, mask, gamma=0.95, lam=0.9), base, strict=True):
        close(got, want.tolist())
    # and a row alone gives what it gives in the batch

    alone = gae(rewards[:1, :2], values[:1, :2], mask[:1, :2], gamma=0.95, lam=0.9)
    close(alone[0], base[0][:1, :2].tolist())


def test_gae_skips_masked_positions_inside_a_row() -> None:
    # a hole (or left padding) is skipped as if absent: (r, v) = (0.1, 0.5), (1.0, 0.7) with gamma=0.9, lam=0.95:
    # t=2: A = 1.0 - 0.7 = 0.3; t=0: delta = 0.1 + 0.9 * 0.7 - 0.5 = 0.23, A = 0.23 + 0.855 * 0.3 = 0.4865
    rewards, values = t([[0.1, 5.0, 1.0], [0.0, 0.1, 1.0]]), t([[0.5, 9.0, 0.7], [3.0, 0.5, 0.7]])
    adv, ret = gae(rewards, values, t([[1, 0, 1], [0, 1, 1]]), gamma=0.9, lam=0.95)
    close(adv, [[0.4865, 0.0, 0.3], [0.0, 0.4865, 0.3]])
    close(ret, [[0.9865, 0.0, 1.0], [0.0, 0.9865, 1.0]])


def test_gae_outputs_are_detached_and_inputs_untouched() -> None:
    values = t([[0.5, 0.6]]).requires_grad_()
    rewards = t([[0.0, 1.0]])
    adv, ret = gae(rewards, values, t([[1, 1]]), gamma=1.0, lam=1.0)
    assert not adv.requires_grad and not ret.requires_grad
    close(rewards, [[0.0, 1.0]])


def test_gae_rejects_bad_discounts() -> None:
    with pytest.raises(ValueError, match="gamma and lam"):
        gae(t([[0.0]]), t([[0.0]]), t([[1]]), gamma=1.1, lam=0.9)


# ---------------------------------------------------------------------------------------------------------------
# Policy loss


def test_policy_loss_at_ratio_1_is_minus_mean_advantage() -> None:
    logp = t([[-1.0, -2.0, -3.0], [-0.5, -0.1, -0.2]])
    adv = t([[1.0, -2.0, 7.0], [0.5, 3.0, 0.5]])
    mask = t([[1, 1, 0], [1, 1, 1]])
    loss, stats = policy_loss(logp, logp.clone(), adv, mask, clip_eps=0.2)
    close(loss, -0.6)  # -(1 - 2 + 0.5 + 3 + 0.5) / 5; the 7 on padding is ignored
    close(stats["clip_fraction"], 0.0)
    close(stats["approx_kl"], 0.0)
    close(stats["ratio_mean"], 1.0)


def test_policy_loss_clipping_by_hand_with_gradients() -> None:
    # log-ratios: ratio 1.5 with A = +2 (clipped), 0.5 with A = -1 (clipped), 1.5 with A = -1 (not clipped: the
    # unclipped term is the larger), 1.1 with A = +1 (inside the range); then a padding token with a huge log-ratio
    log_ratio = [math.log(1.5), math.log(0.5), math.log(1.5), math.log(1.1), 1000.0]  # exp(1000) = inf
    old = t([[-1.0, -2.0, -1.5, -0.7, -50.0]])
    logp = (old + t([log_ratio])).requires_grad_()
    adv = t([[2.0, -1.0, -1.0, 1.0, NAN]])
    mask = t([[1, 1, 1, 1, 0]])
    loss, stats = policy_loss(logp, old, adv, mask, clip_eps=0.2)
    # per token max(-A r, -A clip(r)): max(-3.0, -2.4) = -2.4; max(0.5, 0.8) = 0.8; max(1.5, 1.2) = 1.5;
    # max(-1.1, -1.1) = -1.1; mean over 4 = (-2.4 + 0.8 + 1.5 - 1.1) / 4 = -0.3
    close(loss, -0.3)
    close(stats["clip_fraction"], 0.5)  # tokens 0 and 1
    # 0.5 * mean(log_ratio^2) = 0.5 * (0.164402 + 0.480453 + 0.164402 + 0.009084) / 4 = 0.102293
    close(stats["approx_kl"], 0.5 * sum(x**2 for x in log_ratio[:4]) / 4)
    close(stats["ratio_mean"], (1.5 + 0.5 + 1.5 + 1.1) / 4)  # 1.15
    loss.backward()
    # d/dlogp (-A r) = -A r: clipped tokens 0; token 2: 1.5 / 4 = 0.375; token 3: -1.1 / 4 = -0.275; padding 0
    close(logp.grad, [[0.0, 0.0, 0.375, -0.275, 0.0]])


def test_policy_loss_does_not_differentiate_constants() -> None:
    logp = t([[-1.0]]).requires_grad_()
    old = t([[-1.2]]).requires_grad_()
    adv = t([[1.0]]).requires_grad_()
    loss, stats = policy_loss(logp, old, adv, t([[1]]), clip_eps=0.5)
    loss.backward()
    assert old.grad is None and adv.grad is None and logp.grad is not None
    assert not any(v.requires_grad for v in stats.values())


# ---------------------------------------------------------------------------------------------------------------
# Value loss


def test_value_loss_clipping_by_hand_with_gradients() -> None:
    old = t([[0.0, 0.0, 0.0, 1.0, 0.0]])
    values = t([[0.5, 0.1, 0.5, 0.5, INF]]).requires_grad_()
    returns = t([[1.0, 1.0, 0.0, 0.0, NAN]])
    mask = t([[1, 1, 1, 1, 0]])
    loss, stats = value_loss(values, old, returns, mask, clip_range=0.2)
    # token 0: v clipped to 0.2: max((0.5-1)^2, (0.2-1)^2) = max(0.25, 0.64) = 0.64 (clipped)
    # token 1: inside the range: (0.1-1)^2 = 0.81 both
    # token 2: v clipped to 0.2: max((0.5-0)^2, (0.2-0)^2) = max(0.25, 0.04) = 0.25
    # token 3: v clipped to 0.8: max((0.5-0)^2, (0.8-0)^2) = max(0.25, 0.64) = 0.64 (clipped)
    # loss = 0.5 * (0.64 + 0.81 + 0.25 + 0.64) / 4 = 0.5 * 0.585 = 0.2925
    close(loss, 0.2925)
    close(stats["clip_fraction"], 0.5)
    # explained variance of R = (1, 1, 0, 0) by v = (0.5, 0.1, 0.5, 0.5): residual R - v = (0.5, 0.9, -0.5, -0.5),
    # mean 0.1, var (0.16 + 0.64 + 0.36 + 0.36) / 4 = 0.38; var R = 0.25; 1 - 0.38 / 0.25 = -0.52
    close(stats["explained_variance"], -0.52)
    loss.backward()
    # d/dv 0.5 (v - R)^2 / 4 = (v - R) / 4 where unclipped: token 1: -0.9 / 4 = -0.225; token 2: 0.5 / 4 = 0.125
    close(values.grad, [[0.0, -0.225, 0.125, 0.0, 0.0]])


def test_explained_variance_perfect_mean_and_constant() -> None:
    mask = t([[1, 1, 1, 0]])
    returns = t([[1.0, 2.0, 3.0, 9.0]])
    close(explained_variance(returns, returns, mask), 1.0)
    close(explained_variance(t([[2.0, 2.0, 2.0, 0.0]]), returns, mask), 0.0)  # the mean explains nothing
    assert math.isnan(explained_variance(returns, t([[1.0, 1.0, 1.0, 5.0]]), mask).item())


# ---------------------------------------------------------------------------------------------------------------
# Logits


def test_entropy_of_uniform_is_log_v() -> None:
    logits = torch.full((2, 3, 7), 3.7, dtype=torch.float64)
    logits[1, 2] = t([50.0, 0, 0, 0, 0, 0, 0])  # padding: nearly deterministic, must not count
    close(entropy_from_logits(logits, t([[1, 1, 1], [1, 1, 0]])), math.log(7))  # 1.945910


def test_entropy_by_hand_with_large_and_banned_logits() -> None:
    # logits (0, ln 3, -inf, -inf) -> p = (0.25, 0.75, 0, 0): H = 0.25 ln 4 + 0.75 ln(4/3) = 0.346574 + 0.215762
    two = [0.0, math.log(3), -INF, -INF]
    shifted = [1000.0, 1000.0 + math.log(3), -INF, -INF]  # same distribution, huge logits
    logits = t([[two, shifted, [0.0, 0.0, 0.0, 0.0], [NAN, NAN, NAN, NAN]]]).requires_grad_()
    h_two = 0.25 * math.log(4) + 0.75 * math.log(4 / 3)  # 0.562335
    entropy = entropy_from_logits(logits, t([[1, 1, 1, 0]]))
    close(entropy, (h_two + h_two + math.log(4)) / 3)  # (0.562335 * 2 + 1.386294) / 3 = 0.836988
    entropy.backward()
    assert bool(torch.isfinite(logits.grad).all())


def test_logprobs_from_logits_against_a_hand_softmax() -> None:
    logits = t([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    tokens = torch.tensor([[2, 1]])
    # softmax(1, 2, 3)[2] = e^3 / (e + e^2 + e^3) = 20.085537 / 30.192881 -> log = -0.407606; uniform: -ln 3
    expected = [[math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3))), -math.log(3)]]
    close(logprobs_from_logits(logits, tokens), expected)
    assert expected[0][0] == pytest.approx(-0.407606, abs=1e-6)


def test_logprobs_from_logits_upcasts_half_precision() -> None:
    logits = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.bfloat16)
    out = logprobs_from_logits(logits, torch.tensor([[0]]))
    assert out.dtype == torch.float32 and out.shape == (1, 1)
    close(out, [[-2.407606]], tol=1e-5)  # 1 - 3.407606
    with pytest.raises(ValueError, match="expected logits"):
        logprobs_from_logits(logits, torch.tensor([0]))


# ---------------------------------------------------------------------------------------------------------------
# KL controllers


def test_adaptive_kl_moves_up_and_down_with_clipping() -> None:
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_steps=256)  # 9/6 - 1 = 0.5 -> clipped 0.2; 0.2 * (1 + 0.2 * 0.0256) = 0.201024
    assert ctl.coef == pytest.approx(0.201024, abs=1e-12)
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10000)
    ctl.update(current_kl=3.0, n_steps=256)  # 3/6 - 1 = -0.5 -> clipped -0.2; 0.2 * (1 - 0.00512) = 0.198976
    assert ctl.coef == pytest.approx(0.198976, abs=1e-12)
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10000)
    ctl.update(current_kl=6.6, n_steps=256)  # 6.6/6 - 1 = 0.1, inside the clip; 0.2 * (1 + 0.1 * 0.0256) = 0.200512
    assert ctl.coef == pytest.approx(0.200512, abs=1e-12)
    ctl.update(current_kl=6.0, n_steps=256)  # on target: unchanged
    assert ctl.coef == pytest.approx(0.200512, abs=1e-12)


def test_fixed_kl_controller_never_moves() -> None:
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=100.0, n_steps=1000)
    assert ctl.coef == 0.05


def test_kl_controllers_state_dict_round_trip() -> None:
    ctl = AdaptiveKLController(init_coef=0.2, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_steps=512)
    restored = AdaptiveKLController(init_coef=1.0, target=1.0, horizon=1)
    restored.load_state_dict(ctl.state_dict())
    assert restored.state_dict() == ctl.state_dict()
    ctl.update(current_kl=2.0, n_steps=64)
    restored.update(current_kl=2.0, n_steps=64)
    assert restored.coef == ctl.coef != 0.2
    fixed = FixedKLController(0.0)
    fixed.load_state_dict(FixedKLController(0.3).state_dict())
    assert fixed.coef == 0.3
    with pytest.raises(ValueError, match="state keys"):
        fixed.load_state_dict({"coef": 0.1, "target": 1.0})
