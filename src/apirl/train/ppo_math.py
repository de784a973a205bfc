"""The math of PPO for language models (Ziegler et al. 2019; Dutta et al. 2024), as small pure functions.

No model code here: every function takes tensors and returns new tensors (inputs are never edited in place), so each
can be unit-tested against values computed by hand, and the trainer is left with the plumbing.

Conventions, shared by every function:

* A batch holds B sampled responses, each padded to T response tokens. Per-token tensors are (B, T); logits are
  (B, T, V). Position t of a response holds the log-prob / value / reward of response token t (the trainer shifts
  the model's logits by one so that they line up).
* `mask` (B, T) is 1.0 on real response tokens and 0.0 on padding; a response ends at its EOS, inclusive, so the
  EOS token itself is a real token. A bool mask works too. Padding may hold anything, even inf or nan (a pad
  token's log-prob under a model is often garbage): every function that takes a mask sets padding to 0 with
  `torch.where` (never by multiplying with the mask: inf * 0 = nan) before the arithmetic, so padding leaks
  neither into a result nor into a gradient (the gradient on padding is exactly 0, never nan).
* Reductions over tokens are token-level means over all real tokens of the batch (`masked_mean`), as in TRL.
* The episode ends at each row's last real token: the value after it is 0 (terminal), never the value predicted on
  padding.
* Quantities that act as constants in a loss (old log-probs, advantages, returns, old values) are detached inside
  the loss functions; `gae` returns detached tensors.
* Stats are returned as detached 0-dim tensors (no host sync per minibatch; call `.item()` when logging).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

KLKind = Literal["k1", "k2", "k3"]


def _check_shapes(**tensors: torch.Tensor) -> None:
    """Raise ValueError unless all tensors have the same shape (a silent broadcast is a silent bug here)."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shapes differ: {shapes}")


def _where_mask(mask: torch.Tensor, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """x on real tokens, `fill` on padding; selection (not multiplication), so inf/nan on padding cannot leak."""
    return torch.where(mask.bool(), x, torch.full_like(x, fill))


# ---------------------------------------------------------------------------------------------------------------
# Masked statistics


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the entries where mask is nonzero: sum(mask * x) / sum(mask).

    Why: responses have different lengths, and a plain mean would count padding. `dim=None` averages over every
    real token of the batch (a 0-dim tensor); `dim=d` averages along d only (e.g. `dim=1`: one mean per row).
    An empty mask (or an empty row with `dim`) gives nan (0/0): no host sync is spent checking for it.
    """
    _check_shapes(x=x, mask=mask)
    weights = mask.to(x.dtype)
    total = _where_mask(mask, x * weights)
    if dim is None:
        return total.sum() / weights.sum()
    return total.sum(dim=dim) / weights.sum(dim=dim)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over the masked entries (a 0-dim tensor): masked_mean((x - mu)^2) with mu = masked_mean(x),
    times n / (n - 1) when `unbiased` (Bessel's correction, n = number of masked entries).

    Why masked: padding must not shrink the variance. Raises ValueError when n = 0, or n = 1 and unbiased
    (the variance is undefined there; better loud than a nan in the advantages).
    """
    _check_shapes(x=x, mask=mask)
    x = _where_mask(mask, x)
    n = float(mask.to(x.dtype).sum())
    if n == 0 or (unbiased and n == 1):
        raise ValueError(f"masked_var needs {'2' if unbiased else '1'} or more masked entries, got {n:g}")
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return var * (n / (n - 1)) if unbiased else var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Whiten x over the masked entries: (x - mu) / sqrt(var + eps), with mu and var (unbiased) over real tokens
    only; padding is 0 in the output.

    Why: whitened advantages make the policy step size independent of the reward scale. With `shift_mean=False`
    the mean is added back, (x - mu) / sqrt(var + eps) + mu, i.e. only the spread is rescaled and the mean
    (the sign of "better or worse than usual") is kept: OpenAI's lm-human-preferences and TRL whiten rewards
    that way and advantages with `shift_mean=True`.
    """
    _check_shapes(x=x, mask=mask)
    x = _where_mask(mask, x)
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return _where_mask(mask, whitened)


# ---------------------------------------------------------------------------------------------------------------
# KL penalty and rewards


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: KLKind) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the log-probs of the sampled tokens (Schulman, "Approximating
    KL divergence", 2020), with r = ref_logp - logp = log(p_ref / p_policy) and the token sampled from the policy:

    * k1 = logp - ref_logp = -r: unbiased, but negative on many tokens (high variance);
    * k2 = 0.5 * (logp - ref_logp)^2 = 0.5 * r^2: non-negative, biased (low bias when the two are close);
    * k3 = exp(r) - r - 1: unbiased (E_policy[exp(r)] = 1) and non-negative (e^r >= 1 + r), the usual choice.

    Why: the KL term keeps the policy close to the SFT model, so it cannot drift into text that games the reward
    model. k3 is computed as expm1(r) - r, exact for small r where exp(r) - 1 would cancel. Elementwise, no mask:
    values on padding are whatever the inputs give there (`token_rewards` drops them).
    """
    _check_shapes(logp=logp, ref_logp=ref_logp)
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        r = -log_ratio
        return torch.expm1(r) - r
    raise ValueError(f"unknown KL estimator {kind!r}; expected 'k1', 'k2' or 'k3'")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last real token of each row of a (B, T) mask. Raises ValueError for a row with no real
    token (a response always has one: its EOS, or the last token before the length limit)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).amax(dim=1)
    if bool((last < 0).any()):
        raise ValueError(f"rows without any real response token: {torch.nonzero(last < 0).flatten().tolist()}")
    return last


def token_rewards(score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                  eos_missing_penalty: float = 0.0, ended: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token rewards (B, T): r_t = -kl_coef * kl_t on every real token, plus the sequence score at the last real
    token of each row; 0 on padding.

    score: (B,) the reward model's logit plus any extra sequence-level terms. ended: (B,) bool, True where the row
    produced EOS; rows with ended False get score - eos_missing_penalty (the paper-style penalty for an answer cut
    off by the length limit). A nonzero penalty without `ended` raises ValueError (it would be silently ignored).

    Why this shape: the reward model judges the whole response, so its score is the reward of the final action;
    the KL penalty is paid per token, where the policy deviated from the reference (Ziegler et al. 2019).
    """
    _check_shapes(kl=kl, mask=mask)
    batch = kl.shape[0]
    if score.shape != (batch,):
        raise ValueError(f"score must be (B,) = ({batch},), got {tuple(score.shape)}")
    if ended is not None and ended.shape != (batch,):
        raise ValueError(f"ended must be (B,) = ({batch},), got {tuple(ended.shape)}")
    if eos_missing_penalty != 0.0 and ended is None:
        raise ValueError("eos_missing_penalty is set but `ended` was not given")
    if ended is not None:
        score = torch.where(ended.bool(), score, score - eos_missing_penalty)
    last = last_token_index(mask)
    is_last = torch.arange(kl.shape[1], device=kl.device).unsqueeze(0) == last.unsqueeze(1)
    rewards = _where_mask(mask, -kl_coef * kl)
    return rewards + torch.where(is_last, score.unsqueeze(1).to(rewards.dtype), torch.zeros_like(rewards))


def leave_one_out(score: torch.Tensor, group_size: int) -> torch.Tensor:
    """score (B,) of B / group_size prompts with group_size consecutive responses each, less each response's
    baseline: the mean score of the other responses to its prompt (RLOO's baseline, Ahmadian et al. 2024).

    Why: with a reward paid to few rollouts, a value head learned from scratch cannot tell a good prompt from a
    good response; the other responses to the same prompt can, and leaving the response itself out keeps the
    baseline independent of it (the gradient stays unbiased)."""
    if score.dim() != 1 or group_size < 2 or score.shape[0] % group_size:
        raise ValueError(f"score must be (B,) with B a multiple of group_size >= 2, got {tuple(score.shape)} "
                         f"and {group_size}")
    groups = score.view(-1, group_size)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).view(-1)


# ---------------------------------------------------------------------------------------------------------------
# Advantages


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016) -> (advantages, returns), both (B, T), detached.

    Backwards over each row's real tokens: delta_t = r_t + gamma * V_next - V_t, A_t = delta_t + gamma * lam * A_next,
    where V_next / A_next belong to the next *real* token of the row, and are 0 after the last one (terminal: the
    episode ends at EOS or the length limit, nothing follows). Padding is skipped: its rewards and values are never
    read, and it gets advantage 0 and return 0; a masked position inside a row (left padding, a hole) is skipped as
    if absent. returns_t = A_t + V_t on real tokens, the value head's target
    (the lambda-return). Whiten the advantages afterwards (`masked_whiten`), not the returns.

    Why: lam trades bias (lam = 0: one-step TD) against variance (lam = 1: Monte Carlo return minus baseline).
    """
    _check_shapes(rewards=rewards, values=values, mask=mask)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (B, T), got shape {tuple(rewards.shape)}")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    rewards, values = _where_mask(mask, rewards.detach()), _where_mask(mask, values.detach())
    real = mask.bool()
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    columns: list[torch.Tensor] = []
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = torch.where(real[:, t], delta + gamma * lam * next_adv, torch.zeros_like(delta))
        next_value = torch.where(real[:, t], values[:, t], next_value)
        next_adv = torch.where(real[:, t], adv_t, next_adv)
        columns.append(adv_t)
    advantages = torch.stack(columns[::-1], dim=1)
    returns = advantages + values  # both are 0 on padding
    return advantages, returns


# ---------------------------------------------------------------------------------------------------------------
# Losses


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_eps: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (Schulman et al. 2017), to minimise:

        ratio = exp(logp - old_logp)
        loss  = masked_mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))

    Why: the pessimistic max removes the incentive to move the ratio beyond [1 - eps, 1 + eps] in the direction the
    advantage favours (the gradient there is 0), so several epochs on one batch of samples stay a trust region.

    Stats (detached 0-dim tensors): `clip_fraction`, the share of real tokens where the clipped branch is strictly
    larger (the token gets no gradient); `approx_kl`, masked_mean(0.5 * (logp - old_logp)^2), the k2 estimate of
    KL(old || new); `ratio_mean`. old_logp and advantages are detached; on padding the log-ratio is set to 0 before
    the exp, so a garbage log-prob there cannot overflow into an inf * 0 = nan gradient.
    """
    _check_shapes(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    if not 0.0 < clip_eps < 1.0:
        raise ValueError(f"clip_eps must be in (0, 1), got {clip_eps}")
    advantages = _where_mask(mask, advantages.detach())
    log_ratio = _where_mask(mask, logp - old_logp.detach())
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).to(ratio.dtype), mask),
            "approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(targets - predictions) / Var(targets) over the masked entries (a detached 0-dim tensor).

    Why: the value head's health in one number: 1 is perfect, 0 is no better than predicting the mean, negative
    is worse than that. nan when the targets are constant (Var = 0) or the mask is empty.
    """
    _check_shapes(predictions=predictions, targets=targets, mask=mask)
    with torch.no_grad():
        targets = _where_mask(mask, targets.detach())
        residual = _where_mask(mask, predictions.detach()) - targets
        var_targets = masked_mean((targets - masked_mean(targets, mask)) ** 2, mask)
        var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
        return torch.where(var_targets > 0, 1.0 - var_residual / var_targets, torch.full_like(var_targets, math.nan))


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_range: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped value loss, to minimise:

        v_clip = clip(v, old_v - c, old_v + c)
        loss   = 0.5 * masked_mean(max((v - R)^2, (v_clip - R)^2))

    Why: like the policy's clip, it keeps the value head from moving far from its rollout-time predictions within
    one batch (the gradient is 0 where the clipped error is the larger one).

    Stats (detached 0-dim tensors): `clip_fraction`, the share of real tokens where the clipped error is strictly
    larger; `explained_variance` of the returns by the current predictions `values` (see `explained_variance`).
    old_values and returns are detached.
    """
    _check_shapes(values=values, old_values=old_values, returns=returns, mask=mask)
    if clip_range <= 0.0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")
    values = _where_mask(mask, values)
    old_values, returns = _where_mask(mask, old_values.detach()), _where_mask(mask, returns.detach())
    values_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped = (values - returns) ** 2
    clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).to(unclipped.dtype), mask),
            "explained_variance": explained_variance(values, returns, mask),
        }
    return loss, stats


# ---------------------------------------------------------------------------------------------------------------
# Logits


def _float_logits(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits upcast to float32: a bf16 log-softmax is off by ~1e-2, enough to make PPO's ratio noise."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] for each position: (B, T, V) logits and (B, T) token ids -> (B, T) log-probs.

    Computed as logits[token] - logsumexp(logits), which is log_softmax gathered at the token without building
    the full (B, T, V) log-softmax. Half-precision logits are upcast to float32. The logits must be those of the
    distribution that sampled the tokens (divided by the sampling temperature, if any), or the PPO ratio is wrong.
    """
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and tokens (B, T), got {tuple(logits.shape)} and "
                         f"{tuple(tokens.shape)}")
    logits = _float_logits(logits)
    picked = torch.gather(logits, -1, tokens.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the next-token distributions over real tokens (a 0-dim tensor):
    H_t = -sum_v p_v log p_v with log p = logits - logsumexp(logits).

    Why: a collapsing entropy is the first sign of a policy exploiting the reward model. Stable for any logit
    scale (logsumexp), and a -inf logit (a banned token, p = 0) contributes 0, not 0 * -inf = nan.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    _check_shapes(logits_bt=logits[..., 0], mask=mask)
    logits = _float_logits(logits)
    logits = torch.where(mask.bool().unsqueeze(-1), logits, torch.zeros_like(logits))
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    p = torch.exp(logp)
    logp_finite = torch.where(p > 0, logp, torch.zeros_like(logp))
    entropy = -(p * logp_finite).sum(dim=-1)
    return masked_mean(entropy, mask)


# ---------------------------------------------------------------------------------------------------------------
# KL coefficient controllers


class FixedKLController:
    """A constant KL coefficient. Same interface as `AdaptiveKLController`, so the trainer need not care."""

    def __init__(self, coef: float) -> None:
        if coef < 0:
            raise ValueError(f"KL coefficient must be >= 0, got {coef}")
        self.coef = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt: the coefficient stays."""

    def state_dict(self) -> dict[str, float]:
        return {"coef": self.coef}

    def load_state_dict(self, state: dict[str, float]) -> None:
        _check_keys(state, {"coef"})
        self.coef = float(state["coef"])


class AdaptiveKLController:
    """The adaptive KL coefficient of Ziegler et al. 2019 (sec. 2.2), a proportional controller:

        e = clip(current_kl / target - 1, -0.2, 0.2)
        coef <- coef * (1 + e * n_steps / horizon)

    Why: a fixed coefficient either lets the KL run away or over-constrains the policy; this steers the observed KL
    towards `target`, moving the coefficient by at most 20% per `horizon` samples. `n_steps` is the number of
    samples (responses) since the last update, i.e. the batch size. State: `coef` (changes), `target` and `horizon`
    (settings), all floats; `state_dict` / `load_state_dict` save and restore them with a checkpoint.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        if init_coef < 0 or target <= 0 or horizon <= 0:
            raise ValueError(f"need init_coef >= 0, target > 0, horizon > 0; got {init_coef}, {target}, {horizon}")
        self.coef = float(init_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move the coefficient up when the KL is above target, down when below (see the class docstring)."""
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.coef *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"coef": self.coef, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        _check_keys(state, {"coef", "target", "horizon"})
        self.coef, self.target, self.horizon = float(state["coef"]), float(state["target"]), float(state["horizon"])


def _check_keys(state: dict[str, float], expected: set[str]) -> None:
    if set(state) != expected:
        raise ValueError(f"expected state keys {sorted(expected)}, got {sorted(state)}")
