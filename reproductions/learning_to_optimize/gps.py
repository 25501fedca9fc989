"""Guided policy search (Levine & Abbeel 2014) as Li & Malik (2017, Sections 3.3 and 5) use it.

One iteration, for P training functions ("conditions") at once:

1. **Sample** S trajectories of T steps from each condition's local controller psi_t(a|s) = N(K_t s + k_t, G_t).
2. **Fit local dynamics** p(s'|s, a) = N(A_t s + B_t a + c_t, F_t) per condition and time step, by linear regression
   of s' on (s, a) under a normal-inverse-Wishart prior whose mean and scale come from a mixture of 10 Gaussians
   fitted to all (s, a, s') triples of the iteration (``fit_gmm``, ``fit_dynamics``).
3. **Quadratic cost**: c(s_t) = f(x_t), expanded to second order around the mean location of the samples at each t
   (exact gradient and Hessian; the Hessian is projected onto the positive semi-definite cone so that the
   trajectory optimisation is well posed on the non-convex families - ours).
4. **Trajectory optimisation (C-step)**: minimise E_psi[sum_t c(s_t)] + nu * sum_t KL(psi_t || pi_t) subject to
   sum_t KL(psi_t || psi~_t) <= epsilon (psi~ the previous controller, pi_t the global policy linearised around the
   mean state). With a Lagrange multiplier eta the solution is the maximum-entropy LQG controller of the cost
   (c - nu log pi - eta log psi~) / (eta + nu) (``lqg``); eta is found by bisection on log eta so that the KL bound
   holds (``c_step``), each condition with its own eta.
5. **Supervised policy step (S-step)**: train the network so that its step matches the new controller's mean
   action on the sampled states, weighted by the controller's precision:
   sum (mu_pi(s) - mu_psi(s))^T G_t^{-1} (mu_pi(s) - mu_psi(s)) (``train_policy``).

Simplifications (all ours, see README): the penalty weight nu on the policy KL is a fixed setting rather than a
dual variable updated by dual ascent ("omitting dual variables", as the paper's Section 3.3 also writes the
S-step); the GMM prior's responsibilities are those of each (condition, t) group's sample mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reproductions.core.runtime import NonFiniteError

from reproductions.learning_to_optimize.policy import PolicyNet


@dataclass
class Controller:
    """Time-varying linear-Gaussian controllers of P conditions: a_t ~ N(K_t s + k_t, G_t)."""

    K: torch.Tensor  # [P, T, m, ds]
    k: torch.Tensor  # [P, T, m]
    G: torch.Tensor  # [P, T, m, m]


@dataclass
class Dynamics:
    """s_{t+1} ~ N(Fm_t [s; a] + fv_t, W_t) per condition and time step."""

    Fm: torch.Tensor  # [P, T, ds, ds + m]
    fv: torch.Tensor  # [P, T, ds]
    W: torch.Tensor  # [P, T, ds, ds]


def _sym(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (a + a.transpose(-1, -2))


# ---------------------------------------------------------------------------------------------------------- dynamics
def diverged_samples(states: torch.Tensor, values: torch.Tensor, factor: float) -> torch.Tensor:
    """[P, S] True for a sampled trajectory (states [P, S, T+1, ds], objective values [P, S, T+1]) that diverged:
    a non-finite state or objective, or an objective above ``factor`` times max(1, its starting objective).

    Such a trajectory says nothing a linear-Gaussian model can fit: one run whose objective reached 1e8 (an
    initial momentum controller at the edge of stability, pushed over it by the exploration noise) sets the scale
    of every covariance it enters, and a non-finite one makes them NaN. GPS drops these samples from every fit
    (mixture, dynamics, cost expansion, policy regression) and counts them in its per-iteration rows."""
    finite = torch.isfinite(states).all(-1).all(-1) & torch.isfinite(values).all(-1)
    start = values[..., :1].abs().clamp_min(1.0)
    bounded = (torch.nan_to_num(values, nan=float("inf")) <= factor * start).all(-1)
    return ~(finite & bounded)


def fit_gmm(data: torch.Tensor, k: int, iterations: int, generator: torch.Generator, reg: float = 1e-6):
    """EM for a full-covariance Gaussian mixture on ``data`` [N, D]. Returns (log weights [k'], means [k', D],
    covariances [k', D, D]).

    Every covariance gets ``reg`` times each dimension's variance over the data added to its diagonal (a floor
    relative to the data's own scale in that dimension: the state mixes locations, objective changes and gradients
    of very different sizes), and a component left with less than one point's responsibility is dropped, so no
    component degenerates onto a point. Non-finite rows are an error: drop diverged samples first."""
    bad = ~torch.isfinite(data).all(1)
    if bool(bad.any()):
        raise NonFiniteError(f"the dynamics prior was given {int(bad.sum())} non-finite (s, a, s') rows of "
                             f"{data.shape[0]}; diverged trajectories must be dropped before the fit")
    N, D = data.shape
    k = min(k, N)
    means = data[torch.randperm(N, generator=generator)[:k].to(data.device)].clone()
    var = data.var(0)
    floor = torch.diag_embed(reg * var.clamp_min(1e-12 * float(var.mean()) + 1e-300))
    covs = (data.T.cov() + floor).expand(k, D, D).clone()
    logw = torch.full((k,), -math.log(k), dtype=data.dtype, device=data.device)
    for _ in range(iterations):
        resp = torch.softmax(gmm_log_likelihood(data, logw, means, covs), -1)  # [N, k]
        nk = resp.sum(0)
        live = nk >= 1.0
        resp, nk = resp[:, live], nk[live]
        logw = torch.log(nk / nk.sum())
        means = (resp.T @ data) / nk[:, None]
        diff = data[None] - means[:, None]  # [k, N, D]
        covs = torch.einsum("kn,kni,knj->kij", resp.T, diff, diff) / nk[:, None, None]
        covs = _sym(covs) + floor
    return logw, means, covs


def gmm_log_likelihood(x: torch.Tensor, logw, means, covs) -> torch.Tensor:
    """log w_k + log N(x | mu_k, Sigma_k) for x [N, D] -> [N, k]."""
    L, info = torch.linalg.cholesky_ex(covs)
    if bool((info != 0).any()):
        raise NonFiniteError("the dynamics prior met a covariance that is not positive definite")
    diff = (x[None] - means[:, None]).transpose(1, 2)  # [k, D, N]
    z = torch.linalg.solve_triangular(L, diff, upper=False)
    maha = (z * z).sum(1).T  # [N, k]
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return logw - 0.5 * (maha + logdet + x.shape[1] * math.log(2 * math.pi))


def fit_dynamics(states: torch.Tensor, actions: torch.Tensor, gmm, prior_strength: float = 1.0,
                 reg: float = 1e-6, keep: torch.Tensor | None = None) -> Dynamics:
    """Linear-Gaussian dynamics per condition and step from states [P, S, T+1, ds] and actions [P, S, T, m],
    with a normal-inverse-Wishart prior from the GMM ``gmm`` (log weights, means, covariances over (s, a, s')).
    ``keep`` [P, S] (default all) selects the samples used: each condition's fit uses its own N of them. A
    condition with none gets finite but meaningless dynamics (the caller keeps its previous controller)."""
    P, S, T1, ds = states.shape
    T, m = T1 - 1, actions.shape[-1]
    if keep is None:
        keep = torch.ones(P, S, dtype=torch.bool, device=states.device)
    xuy = torch.cat([states[:, :, :-1], actions, states[:, :, 1:]], -1)  # [P, S, T, D]
    w = keep.to(xuy.dtype)[:, :, None, None]
    xuy = torch.where(keep[:, :, None, None], xuy, torch.zeros_like(xuy))  # dropped samples may hold inf/NaN
    D = xuy.shape[-1]
    S = keep.sum(1).to(xuy.dtype)[:, None, None, None]  # [P, 1, 1, 1]: samples per condition
    mu = (w * xuy).sum(1) / S[:, 0].clamp_min(1)  # [P, T, D]
    diff = w * (xuy - mu[:, None])
    emp = torch.einsum("pstd,pste->ptde", diff, diff) / S.clamp_min(1)
    logw, means, covs = gmm
    resp = torch.softmax(gmm_log_likelihood(mu.reshape(-1, D), logw, means, covs), -1).reshape(P, T, -1)
    mu0 = torch.einsum("ptk,kd->ptd", resp, means)
    dm = means[None, None] - mu0[:, :, None]  # [P, T, k, D]
    phi = torch.einsum("ptk,kde->ptde", resp, covs) + torch.einsum("ptk,ptkd,ptke->ptde", resp, dm, dm)
    n0 = prior_strength
    dmu = (mu - mu0)[..., None]
    sigma = (n0 * phi + S * emp + (S * n0 / (S + n0)) * dmu @ dmu.transpose(-1, -2)) / (S + n0)  # S [P, 1, 1, 1]
    sigma = _sym(sigma)
    i_xu, i_y = slice(0, ds + m), slice(ds + m, D)
    s_xx = sigma[..., i_xu, i_xu] + reg * torch.eye(ds + m, dtype=sigma.dtype, device=sigma.device)
    s_yx = sigma[..., i_y, i_xu]
    Fm = torch.linalg.solve(s_xx, s_yx.transpose(-1, -2)).transpose(-1, -2)  # [P, T, ds, ds+m]
    fv = mu[..., i_y] - (Fm @ mu[..., i_xu, None])[..., 0]
    W = _sym(sigma[..., i_y, i_y] - Fm @ s_xx @ Fm.transpose(-1, -2))
    return Dynamics(Fm, fv, W)


# --------------------------------------------------------------------------------------------------------------- cost
def psd(h: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Project symmetric matrices onto {eigenvalues >= floor}."""
    vals, vecs = torch.linalg.eigh(_sym(h))
    return (vecs * vals.clamp_min(floor)[..., None, :]) @ vecs.transpose(-1, -2)


def quadratic_cost(problems, x_mean: torch.Tensor, ds: int):
    """c(s) = f(x) to second order around x_mean [P, T+1, n], in state coordinates: (C [P, T+1, ds, ds],
    c [P, T+1, ds]) with c(s) ~ 1/2 s'Cs + c's + const."""
    P, T1, n = x_mean.shape
    _, g = problems.value_and_grad(x_mean)
    H = psd(problems.hessian(x_mean))
    C = torch.zeros(P, T1, ds, ds, dtype=x_mean.dtype, device=x_mean.device)
    c = torch.zeros(P, T1, ds, dtype=x_mean.dtype, device=x_mean.device)
    C[..., :n, :n] = H
    c[..., :n] = g - (H @ x_mean[..., None])[..., 0]
    return C, c


def neg_log_gaussian_policy(K: torch.Tensor, k: torch.Tensor, prec: torch.Tensor):
    """-log N(a; K s + k, G) as a quadratic in [s; a]: (Q [.., ds+m, ds+m], q [.., ds+m]) up to a constant;
    ``prec`` is G^{-1}."""
    m = K.shape[-2]
    M = torch.cat([-K, torch.eye(m, dtype=K.dtype, device=K.device).expand(*K.shape[:-2], m, m)], -1)  # [.., m, ds+m]
    Q = M.transpose(-1, -2) @ prec @ M
    q = -(M.transpose(-1, -2) @ (prec @ k[..., None]))[..., 0]
    return Q, q


# --------------------------------------------------------------------------------------------------------------- LQG
def lqg(dyn: Dynamics, C: torch.Tensor, c: torch.Tensor, prev: Controller, eta: torch.Tensor,
        policy_lin: Controller | None, nu: float):
    """Maximum-entropy LQG for the cost (c(s) - nu log pi(a|s) - eta log psi~(a|s)) / (eta + nu).
    Returns (Controller, ok [P]) where ok is False for a condition whose Q_uu was not positive definite."""
    P, T, ds, dsm = dyn.Fm.shape
    m = dsm - ds
    scale = (eta + nu)[:, None, None]  # [P, 1, 1]
    V = C[:, T] / scale
    v = c[:, T] / scale[..., 0]
    Ks, ks, Gs = [], [], []
    ok = torch.ones(P, dtype=torch.bool, device=C.device)
    Qp, qp = neg_log_gaussian_policy(prev.K, prev.k, torch.linalg.inv(prev.G))
    if policy_lin is not None and nu > 0:
        Qpi, qpi = neg_log_gaussian_policy(policy_lin.K, policy_lin.k, torch.linalg.inv(policy_lin.G))
    for t in reversed(range(T)):
        Q = eta[:, None, None] * Qp[:, t]
        q = eta[:, None] * qp[:, t]
        if policy_lin is not None and nu > 0:
            Q = Q + nu * Qpi[:, t]
            q = q + nu * qpi[:, t]
        Q = Q / scale
        q = q / scale[..., 0]
        Q[:, :ds, :ds] += C[:, t] / scale
        q[:, :ds] += c[:, t] / scale[..., 0]
        Fm, fv = dyn.Fm[:, t], dyn.fv[:, t]
        Q = _sym(Q + Fm.transpose(-1, -2) @ V @ Fm)
        q = q + (Fm.transpose(-1, -2) @ (V @ fv[..., None] + v[..., None]))[..., 0]
        Quu, Qus, Qss = Q[:, ds:, ds:], Q[:, ds:, :ds], Q[:, :ds, :ds]
        L, info = torch.linalg.cholesky_ex(Quu)
        good = info == 0
        ok &= good
        L = torch.where(good[:, None, None], L, torch.eye(m, dtype=L.dtype, device=L.device).expand_as(L))
        K = -torch.cholesky_solve(Qus, L)
        k = -torch.cholesky_solve(q[:, ds:, None], L)[..., 0]
        G = torch.cholesky_inverse(L)
        V = _sym(Qss + Qus.transpose(-1, -2) @ K)
        v = q[:, :ds] + (Qus.transpose(-1, -2) @ k[..., None])[..., 0]
        Ks.append(K)
        ks.append(k)
        Gs.append(_sym(G))
    return Controller(torch.stack(Ks[::-1], 1), torch.stack(ks[::-1], 1), torch.stack(Gs[::-1], 1)), ok


def forward(dyn: Dynamics, ctrl: Controller, s0: torch.Tensor, jitter: float = 1e-8):
    """State marginals N(mu_t, Sigma_t) [P, T+1, ds], [P, T+1, ds, ds] under the controller and dynamics."""
    P, T, ds, _ = dyn.Fm.shape
    mu, sig = s0, jitter * torch.eye(ds, dtype=s0.dtype, device=s0.device).expand(P, ds, ds)
    mus, sigs = [mu], [sig]
    for t in range(T):
        K, k, G = ctrl.K[:, t], ctrl.k[:, t], ctrl.G[:, t]
        mu_a = (K @ mu[..., None])[..., 0] + k
        s_sa = K @ sig
        joint = torch.cat([torch.cat([sig, s_sa.transpose(-1, -2)], -1),
                           torch.cat([s_sa, _sym(s_sa @ K.transpose(-1, -2)) + G], -1)], -2)
        Fm = dyn.Fm[:, t]
        mu = (Fm @ torch.cat([mu, mu_a], -1)[..., None])[..., 0] + dyn.fv[:, t]
        sig = _sym(Fm @ joint @ Fm.transpose(-1, -2) + dyn.W[:, t])
        mus.append(mu)
        sigs.append(sig)
    return torch.stack(mus, 1), torch.stack(sigs, 1)


def kl_divergence(new: Controller, old: Controller, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """sum_t E_{s ~ N(mu_t, Sigma_t)} KL(N(K s + k, G) || N(K~ s + k~, G~)) per condition [P]."""
    m = new.K.shape[-2]
    prec_old = torch.linalg.inv(old.G)
    dK, dk = new.K - old.K, new.k - old.k
    mean_diff = (dK @ mu[:, :-1, :, None])[..., 0] + dk  # [P, T, m]
    quad = (mean_diff[..., None, :] @ prec_old @ mean_diff[..., None])[..., 0, 0]
    trace_k = torch.einsum("ptij,ptjk,ptki->pt", dK.transpose(-1, -2) @ prec_old, dK, sigma[:, :-1])
    logdet = torch.logdet(old.G) - torch.logdet(new.G)
    tr = torch.einsum("ptij,ptji->pt", prec_old, new.G)
    return (0.5 * (tr - m + logdet + quad + trace_k)).sum(1)


def c_step(dyn: Dynamics, C, c, prev: Controller, s0: torch.Tensor, epsilon: float, policy_lin: Controller | None,
           nu: float, steps: int = 12, log_eta_range: tuple[float, float] = (-6.0, 6.0)):
    """Bisection on log10(eta), per condition, for the smallest eta whose controller keeps
    sum_t KL(psi || psi~) <= epsilon. Returns (Controller, eta [P], KL [P])."""
    P = s0.shape[0]
    lo = torch.full((P,), log_eta_range[0], dtype=s0.dtype, device=s0.device)
    hi = torch.full((P,), log_eta_range[1], dtype=s0.dtype, device=s0.device)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        ctrl, ok = lqg(dyn, C, c, prev, 10.0 ** mid, policy_lin, nu)
        kl = kl_divergence(ctrl, prev, *forward(dyn, ctrl, s0))
        too_far = ~ok | ~torch.isfinite(kl) | (kl > epsilon)
        lo = torch.where(too_far, mid, lo)
        hi = torch.where(too_far, hi, mid)
    eta = 10.0 ** hi
    ctrl, ok = lqg(dyn, C, c, prev, eta, policy_lin, nu)
    kl = kl_divergence(ctrl, prev, *forward(dyn, ctrl, s0))
    if not bool(ok.all()):  # at the top of the range the previous controller dominates; fall back to it there
        keep = ~ok
        ctrl = Controller(torch.where(keep[:, None, None, None], prev.K, ctrl.K),
                          torch.where(keep[:, None, None], prev.k, ctrl.k),
                          torch.where(keep[:, None, None, None], prev.G, ctrl.G))
        kl = torch.where(keep, torch.zeros_like(kl), kl)
    return ctrl, eta, kl


# ------------------------------------------------------------------------------------------------------------ policy
def linearise_policy(policy: PolicyNet, mean_states: torch.Tensor, n: int, cov: torch.Tensor) -> Controller:
    """pi linearised around the mean states [P, T, ds]: K = d mu / d s (zero on x), k = mu(s) - K s, G = cov."""
    feats = mean_states[..., n:]
    with torch.no_grad():
        J = policy.jacobian(feats)  # [P, T, n, ds - n]
        mu = policy(feats)
    K = torch.cat([torch.zeros(*J.shape[:-1], n, dtype=J.dtype, device=J.device), J], -1)
    k = mu - (K @ mean_states[..., None])[..., 0]
    return Controller(K, k, cov.expand(*K.shape[:-2], n, n).clone())


def policy_covariance(ctrl: Controller) -> torch.Tensor:
    """The global policy's covariance: the inverse of the local controllers' mean precision."""
    return _sym(torch.linalg.inv(torch.linalg.inv(ctrl.G).mean((0, 1))))


def train_policy(policy: PolicyNet, states: torch.Tensor, ctrl: Controller, n: int, epochs: int, batch_size: int,
                 lr: float, generator: torch.Generator, optimizer: torch.optim.Optimizer | None = None,
                 keep: torch.Tensor | None = None) -> float:
    """S-step: precision-weighted regression of the network's step on the controllers' mean actions at the sampled
    states [P, S, T+1, ds] (the last state of each trajectory has no action and is not used), over the samples
    ``keep`` [P, S] selects (default all). Returns the final epoch's mean loss."""
    P, S, T1, ds = states.shape
    T = T1 - 1
    if keep is None:
        keep = torch.ones(P, S, dtype=torch.bool, device=states.device)
    s = states[:, :, :T]
    target = torch.einsum("ptij,pstj->psti", ctrl.K, s) + ctrl.k[:, None]
    prec = torch.linalg.inv(ctrl.G)[:, None].expand(P, S, T, n, n)
    prec = prec / torch.diagonal(prec, dim1=-2, dim2=-1).sum(-1).mean()  # overall scale only; Adam is scale-free
    feats, target, prec = s[keep][..., n:].reshape(-1, ds - n), target[keep].reshape(-1, n), prec[keep].reshape(-1, n, n)
    optimizer = optimizer or torch.optim.Adam(policy.parameters(), lr=lr)
    N = feats.shape[0]
    loss_value = float("nan")
    for _ in range(epochs):
        order = torch.randperm(N, generator=generator).to(feats.device)
        total = 0.0
        for i in range(0, N, batch_size):
            idx = order[i:i + batch_size]
            d = policy(feats[idx]) - target[idx]
            loss = (d[:, None, :] @ prec[idx] @ d[:, :, None]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        loss_value = total / N
    return loss_value
