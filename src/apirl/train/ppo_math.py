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
