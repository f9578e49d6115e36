//! Unconstrained limited-memory BFGS that retraces the path of SciPy's
//! `minimize(method="L-BFGS-B")` (the routine scikit-learn's `lbfgs` solver
//! calls) when no bounds are given.
//!
//! Without bounds, L-BFGS-B reduces to plain L-BFGS, but several details decide
//! *which* iterates it visits, and with scikit-learn's loose default tolerance
//! (max |gradient| <= 1e-4) the fit often stops after a handful of iterations,
//! so the predictions depend on those details. Reproduced here:
//!
//! * search direction: `-H g`, with `H` the limited-memory inverse Hessian built
//!   from at most `memory` (s, y) pairs and scaled by `s'y / y'y` of the newest
//!   pair; with an empty memory the direction is `-g`;
//! * first trial step `1 / ||d||` on the very first iteration, `1` afterwards;
//! * the Moré–Thuente line search (MINPACK-2 `dcsrch`/`dcstep`) with
//!   sufficient-decrease 1e-3, curvature 0.9, interval tolerance 0.1,
//!   step bounds `[0, 1e10]`, at most `max_ls` evaluations per search;
//! * a failed search restores the previous point, forgets the memory and
//!   retries along `-g`; failing with an empty memory ends the run;
//! * an (s, y) pair is skipped when its curvature `s'y` is not above
//!   `eps * (-g_old' s)`;
//! * stopping: the iteration budget is checked first, then
//!   `max |g| <= gtol`, then relative decrease `<= ftol`.
//!
//! The iterates agree with SciPy up to floating-point summation order.

/// Settings mirroring the options scikit-learn hands to SciPy.
#[derive(Debug, Clone, Copy)]
pub struct LbfgsOptions {
    /// Iteration budget (`maxiter`). An iteration is one accepted line search.
    pub max_iter: usize,
    /// Stop when the largest absolute gradient entry is at most this (`gtol`).
    pub gtol: f64,
    /// Stop when `(f_old - f) / max(|f_old|, |f|, 1)` is at most this (`ftol`).
    pub ftol: f64,
    /// Number of stored correction pairs (`maxcor`).
    pub memory: usize,
    /// Maximum function evaluations within one line search (`maxls`).
    pub max_ls: usize,
    /// Overall evaluation budget (`maxfun`).
    pub max_fun: usize,
}

impl LbfgsOptions {
    /// What scikit-learn's `LogisticRegression(solver="lbfgs")` passes.
    pub fn sklearn(max_iter: usize, tol: f64) -> Self {
        LbfgsOptions {
            max_iter,
            gtol: tol,
            ftol: 64.0 * f64::EPSILON,
            memory: 10,
            max_ls: 50,
            max_fun: 15_000,
        }
    }
}

/// Why the minimiser stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbfgsStatus {
    /// Largest absolute gradient entry fell to `gtol`.
    GradientTolerance,
    /// Relative decrease of the objective fell to `ftol`.
    FunctionTolerance,
    /// Iteration budget used up (scikit-learn warns "failed to converge").
    MaxIterations,
    /// Evaluation budget used up.
    MaxEvaluations,
    /// Line search failed with no curvature memory to drop.
    LineSearchFailed,
    /// The objective or its gradient became NaN/infinite; the last finite
    /// point is returned.
    NonFinite,
}

impl LbfgsStatus {
    /// SciPy's notion of success (its `warnflag == 0`).
    pub fn converged(self) -> bool {
        matches!(
            self,
            LbfgsStatus::GradientTolerance | LbfgsStatus::FunctionTolerance
        )
    }
}

/// Result of a minimisation.
#[derive(Debug, Clone)]
pub struct LbfgsOutcome {
    pub x: Vec<f64>,
    pub f: f64,
    /// Accepted iterations, as SciPy's `nit` (what scikit-learn reports as `n_iter_`).
    pub n_iter: usize,
    pub n_eval: usize,
    pub status: LbfgsStatus,
}

/// `Iterator::sum`'s starting value (-0.0): the hand-fused loops below start
/// from it so that they add exactly like `iter().map(..).sum()` would.
fn sum_start() -> f64 {
    std::iter::empty::<f64>().sum()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `(dot(a, b), dot(b, b))` in one pass (two independent sums, each in order).
fn dot_and_sq(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (mut ab, mut bb) = (sum_start(), sum_start());
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        bb += y * y;
    }
    (ab, bb)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0_f64, |m, x| m.max(x.abs()))
}

fn all_finite(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// One stored correction pair.
struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
    /// `1 / s'y`, with `s'y` computed the way the reference code does it
    /// (from directional derivatives), not as a fresh dot product.
    rho: f64,
}

/// `-H g` by the two-loop recursion, written into `q`; `h0` is the initial
/// inverse-Hessian scale and `pairs` is not empty. Each vector update is
/// fused with the dot product that follows it (same values, same order).
fn direction(
    g: &[f64],
    pairs: &std::collections::VecDeque<Pair>,
    h0: f64,
    alphas: &mut Vec<f64>,
    q: &mut [f64],
) {
    let m = pairs.len();
    debug_assert!(m > 0);
    q.copy_from_slice(g);
    alphas.clear();
    alphas.resize(m, 0.0);
    let mut sq = dot(&pairs[m - 1].s, q);
    for k in (0..m).rev() {
        let p = &pairs[k];
        let a = p.rho * sq;
        alphas[k] = a;
        let mut acc = sum_start();
        if k > 0 {
            let s_next = &pairs[k - 1].s;
            for ((qi, yi), si) in q.iter_mut().zip(&p.y).zip(s_next) {
                *qi -= a * yi;
                acc += si * *qi;
            }
        } else {
            // last update, the scaling by h0, and the second loop's first dot
            for (qi, yi) in q.iter_mut().zip(&p.y) {
                *qi -= a * yi;
                *qi *= h0;
            }
            for (qi, yi) in q.iter().zip(&pairs[0].y) {
                acc += yi * qi;
            }
        }
        sq = acc;
    }
    for k in 0..m {
        let p = &pairs[k];
        let b = p.rho * sq;
        let coeff = alphas[k] - b;
        if k + 1 < m {
            let y_next = &pairs[k + 1].y;
            let mut acc = sum_start();
            for ((qi, si), yi) in q.iter_mut().zip(&p.s).zip(y_next) {
                *qi += coeff * si;
                acc += yi * *qi;
            }
            sq = acc;
        } else {
            for (qi, si) in q.iter_mut().zip(&p.s) {
                *qi = -(*qi + coeff * si);
            }
        }
    }
}

/// Minimise `fg` from `x0`. `fg(x, grad)` returns the objective at `x` and
/// writes its gradient into `grad`.
pub fn minimize<F>(x0: Vec<f64>, mut fg: F, opts: &LbfgsOptions) -> LbfgsOutcome
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut f = fg(&x, &mut g);
    let mut n_eval = 1;
    let done =
        |x: Vec<f64>, f: f64, n_iter: usize, n_eval: usize, status: LbfgsStatus| LbfgsOutcome {
            x,
            f,
            n_iter,
            n_eval,
            status,
        };
    if !f.is_finite() || !all_finite(&g) {
        return done(x, f, 0, n_eval, LbfgsStatus::NonFinite);
    }
    if max_abs(&g) <= opts.gtol {
        return done(x, f, 0, n_eval, LbfgsStatus::GradientTolerance);
    }

    let memory = opts.memory.max(1);
    let mut pairs: std::collections::VecDeque<Pair> = std::collections::VecDeque::new();
    // Scale of the initial Hessian approximation, y'y / s'y of the newest pair.
    let mut theta = 1.0_f64;
    let mut n_iter = 0_usize;
    // Buffers reused across iterations.
    let mut d = vec![0.0; n];
    let mut x_old = vec![0.0; n];
    let mut g_old = vec![0.0; n];
    let mut alphas = Vec::with_capacity(memory);
    let mut spare: Option<Pair> = None;

    loop {
        if pairs.is_empty() {
            for (di, gi) in d.iter_mut().zip(&g) {
                *di = -gi / theta;
            }
        } else {
            direction(&g, &pairs, 1.0 / theta, &mut alphas, &mut d);
        }

        // ---- line search along d ----
        x_old.copy_from_slice(&x);
        g_old.copy_from_slice(&g);
        let f_old = f;
        let (gd_old, dd) = dot_and_sq(&g, &d);
        let dnorm = dd.sqrt();
        let step_max = 1e10;
        let mut stp = if n_iter == 0 {
            (1.0 / dnorm).min(step_max)
        } else {
            1.0
        };

        let mut search_ok = false;
        let mut non_finite = false;
        let mut gd = gd_old;
        if gd_old < 0.0 && dnorm.is_finite() {
            let mut ls = MoreThuente::start(f_old, gd_old, stp, 0.0, step_max);
            let mut evals_here = 0_usize;
            loop {
                if evals_here >= opts.max_ls {
                    break;
                }
                for ((xi, xo), di) in x.iter_mut().zip(&x_old).zip(&d) {
                    *xi = stp * di + xo;
                }
                f = fg(&x, &mut g);
                n_eval += 1;
                evals_here += 1;
                if !f.is_finite() || !all_finite(&g) {
                    non_finite = true;
                    break;
                }
                gd = dot(&g, &d);
                match ls.next(f, gd, &mut stp) {
                    SearchState::Evaluate => continue,
                    SearchState::Done => {
                        search_ok = true;
                        break;
                    }
                    SearchState::Invalid => break,
                }
            }
        }

        if non_finite {
            return done(x_old, f_old, n_iter, n_eval, LbfgsStatus::NonFinite);
        }
        if !search_ok {
            x.copy_from_slice(&x_old);
            g.copy_from_slice(&g_old);
            f = f_old;
            if pairs.is_empty() {
                return done(x, f, n_iter, n_eval, LbfgsStatus::LineSearchFailed);
            }
            // Drop the curvature memory and retry from the same point along -g.
            spare = pairs.pop_back();
            pairs.clear();
            theta = 1.0;
            continue;
        }

        // ---- accepted step ----
        n_iter += 1;
        if n_iter >= opts.max_iter {
            return done(x, f, n_iter, n_eval, LbfgsStatus::MaxIterations);
        }
        if n_eval > opts.max_fun {
            return done(x, f, n_iter, n_eval, LbfgsStatus::MaxEvaluations);
        }
        if max_abs(&g) <= opts.gtol {
            return done(x, f, n_iter, n_eval, LbfgsStatus::GradientTolerance);
        }
        let scale = f_old.abs().max(f.abs()).max(1.0);
        if f_old - f <= opts.ftol * scale {
            return done(x, f, n_iter, n_eval, LbfgsStatus::FunctionTolerance);
        }

        // ---- curvature pair ----
        let (sy, guard) = if stp == 1.0 {
            (gd - gd_old, -gd_old)
        } else {
            ((gd - gd_old) * stp, -gd_old * stp)
        };
        if sy <= f64::EPSILON * guard {
            continue;
        }
        // Reuse the oldest pair's (or a dropped pair's) storage.
        let mut pair = if pairs.len() == memory {
            pairs.pop_front()
        } else {
            spare.take()
        }
        .unwrap_or_else(|| Pair {
            s: vec![0.0; n],
            y: vec![0.0; n],
            rho: 0.0,
        });
        let mut yy = sum_start();
        for ((yi, a), b) in pair.y.iter_mut().zip(&g).zip(&g_old) {
            *yi = a - b;
            yy += *yi * *yi;
        }
        for (si, di) in pair.s.iter_mut().zip(&d) {
            *si = di * stp;
        }
        pair.rho = 1.0 / sy;
        pairs.push_back(pair);
        theta = yy / sy;
    }
}

/// What the line search wants next.
enum SearchState {
    /// Evaluate the objective at the updated step.
    Evaluate,
    /// The step is accepted (conditions met, or no further progress possible).
    Done,
    /// Inputs were inconsistent; treat as a failed search.
    Invalid,
}

/// Moré–Thuente line search state (MINPACK-2's `dcsrch`), driven by
/// alternating `next` calls and objective evaluations.
struct MoreThuente {
    gtol: f64,
    xtol: f64,
    stpmin: f64,
    stpmax: f64,
    bracketed: bool,
    stage_two: bool,
    f_init: f64,
    g_init: f64,
    g_test: f64,
    width: f64,
    width_prev: f64,
    // best step so far and its value/derivative
    stx: f64,
    fx: f64,
    gx: f64,
    // other end of the bracketing interval
    sty: f64,
    fy: f64,
    gy: f64,
    // current allowed step range
    lo: f64,
    hi: f64,
    invalid: bool,
}

impl MoreThuente {
    const EXTRAP_LO: f64 = 1.1;
    const EXTRAP_HI: f64 = 4.0;

    fn start(f0: f64, g0: f64, stp: f64, stpmin: f64, stpmax: f64) -> Self {
        let (ftol, gtol, xtol) = (1e-3, 0.9, 0.1);
        let invalid = stp < stpmin || stp > stpmax || g0 >= 0.0 || stpmax < stpmin;
        let width = stpmax - stpmin;
        MoreThuente {
            gtol,
            xtol,
            stpmin,
            stpmax,
            bracketed: false,
            stage_two: false,
            f_init: f0,
            g_init: g0,
            g_test: ftol * g0,
            width,
            width_prev: 2.0 * width,
            stx: 0.0,
            fx: f0,
            gx: g0,
            sty: 0.0,
            fy: f0,
            gy: g0,
            lo: 0.0,
            hi: stp + Self::EXTRAP_HI * stp,
            invalid,
        }
    }

    /// Feed the value `f` and directional derivative `g` at the step `stp`;
    /// on `Evaluate`, `stp` holds the next trial step.
    fn next(&mut self, f: f64, g: f64, stp: &mut f64) -> SearchState {
        if self.invalid {
            return SearchState::Invalid;
        }
        let s = *stp;
        let f_test = self.f_init + s * self.g_test;
        if !self.stage_two && f <= f_test && g >= 0.0 {
            self.stage_two = true;
        }

        // Situations where no further progress is possible end the search
        // with the current step (MINPACK reports them as warnings).
        let mut stop = false;
        if self.bracketed && (s <= self.lo || s >= self.hi) {
            stop = true;
        }
        if self.bracketed && self.hi - self.lo <= self.xtol * self.hi {
            stop = true;
        }
        if s == self.stpmax && f <= f_test && g <= self.g_test {
            stop = true;
        }
        if s == self.stpmin && (f > f_test || g >= self.g_test) {
            stop = true;
        }
        // Strong Wolfe conditions.
        if f <= f_test && g.abs() <= self.gtol * (-self.g_init) {
            stop = true;
        }
        if stop {
            return SearchState::Done;
        }

        let mut new_stp = s;
        // While the sufficient-decrease test has not yet been met, work on the auxiliary
        // function psi(a) = f(a) - f(0) - ftol*a*f'(0): the same step on values shifted by
        // the test's slope (a shift of 0 leaves them as they are).
        let gt = if !self.stage_two && f <= self.fx && f > f_test {
            self.g_test
        } else {
            0.0
        };
        let mut lx = Trial {
            stp: self.stx,
            f: self.fx - self.stx * gt,
            g: self.gx - gt,
        };
        let mut ly = Trial {
            stp: self.sty,
            f: self.fy - self.sty * gt,
            g: self.gy - gt,
        };
        let cur = Trial {
            stp: s,
            f: f - s * gt,
            g: g - gt,
        };
        safeguarded_step(
            &mut lx,
            &mut ly,
            &mut new_stp,
            cur,
            &mut self.bracketed,
            self.lo,
            self.hi,
        );
        self.stx = lx.stp;
        self.fx = lx.f + lx.stp * gt;
        self.gx = lx.g + gt;
        self.sty = ly.stp;
        self.fy = ly.f + ly.stp * gt;
        self.gy = ly.g + gt;

        // Bisect if the interval is not shrinking fast enough.
        if self.bracketed {
            if (self.sty - self.stx).abs() >= 0.66 * self.width_prev {
                new_stp = self.stx + 0.5 * (self.sty - self.stx);
            }
            self.width_prev = self.width;
            self.width = (self.sty - self.stx).abs();
        }

        if self.bracketed {
            self.lo = self.stx.min(self.sty);
            self.hi = self.stx.max(self.sty);
        } else {
            self.lo = new_stp + Self::EXTRAP_LO * (new_stp - self.stx);
            self.hi = new_stp + Self::EXTRAP_HI * (new_stp - self.stx);
        }

        new_stp = new_stp.max(self.stpmin).min(self.stpmax);

        // When nothing more can be gained, fall back to the best step seen.
        if self.bracketed
            && (new_stp <= self.lo
                || new_stp >= self.hi
                || self.hi - self.lo <= self.xtol * self.hi)
        {
            new_stp = self.stx;
        }
        *stp = new_stp;
        SearchState::Evaluate
    }
}

/// A step with its (possibly modified) function value and derivative.
#[derive(Clone, Copy)]
struct Trial {
    stp: f64,
    f: f64,
    g: f64,
}

/// MINPACK-2's `dcstep`: choose the next trial step from cubic/quadratic/secant
/// models of the two interval ends and the current point, then update the
/// interval. `best` is the end with the lowest value, `other` the far end.
fn safeguarded_step(
    best: &mut Trial,
    other: &mut Trial,
    stp: &mut f64,
    cur: Trial,
    bracketed: &mut bool,
    stpmin: f64,
    stpmax: f64,
) {
    let (sx, fx, dx) = (best.stp, best.f, best.g);
    let (sp, fp, dp) = (cur.stp, cur.f, cur.g);
    let sign = dp * (dx / dx.abs());

    let next;
    if fp > fx {
        // Higher value: a minimiser lies between best and the current point.
        // Take the cubic step if it is nearer to `best` than the quadratic
        // step, otherwise the midpoint of the two.
        let theta = 3.0 * (fx - fp) / (sp - sx) + dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).sqrt();
        if sp < sx {
            gamma = -gamma;
        }
        let p = (gamma - dx) + theta;
        let q = ((gamma - dx) + gamma) + dp;
        let cubic = sx + (p / q) * (sp - sx);
        let quad = sx + ((dx / ((fx - fp) / (sp - sx) + dx)) / 2.0) * (sp - sx);
        next = if (cubic - sx).abs() < (quad - sx).abs() {
            cubic
        } else {
            cubic + (quad - cubic) / 2.0
        };
        *bracketed = true;
    } else if sign < 0.0 {
        // Lower value, derivative changed sign: bracketed. Take whichever of
        // the cubic and secant steps lies farther from the current point.
        let theta = 3.0 * (fx - fp) / (sp - sx) + dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).sqrt();
        if sp > sx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = ((gamma - dp) + gamma) + dx;
        let cubic = sp + (p / q) * (sx - sp);
        let secant = sp + (dp / (dp - dx)) * (sx - sp);
        next = if (cubic - sp).abs() > (secant - sp).abs() {
            cubic
        } else {
            secant
        };
        *bracketed = true;
    } else if dp.abs() < dx.abs() {
        // Lower value, same derivative sign, slope shrinking.
        let theta = 3.0 * (fx - fp) / (sp - sx) + dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).max(0.0).sqrt();
        if sp > sx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = (gamma + (dx - dp)) + gamma;
        let r = p / q;
        let cubic = if r < 0.0 && gamma != 0.0 {
            sp + r * (sx - sp)
        } else if sp > sx {
            stpmax
        } else {
            stpmin
        };
        let secant = sp + (dp / (dp - dx)) * (sx - sp);
        if *bracketed {
            let pick = if (cubic - sp).abs() < (secant - sp).abs() {
                cubic
            } else {
                secant
            };
            let limit = sp + 0.66 * (other.stp - sp);
            next = if sp > sx {
                limit.min(pick)
            } else {
                limit.max(pick)
            };
        } else {
            let pick = if (cubic - sp).abs() > (secant - sp).abs() {
                cubic
            } else {
                secant
            };
            next = pick.min(stpmax).max(stpmin);
        }
    } else {
        // Lower value, same sign, slope not shrinking: extrapolate to a bound
        // unless bracketed, in which case use the cubic through `other`.
        if *bracketed {
            let (sy, fy, dy) = (other.stp, other.f, other.g);
            let theta = 3.0 * (fp - fy) / (sy - sp) + dy + dp;
            let s = theta.abs().max(dy.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (dy / s) * (dp / s)).sqrt();
            if sp > sy {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = ((gamma - dp) + gamma) + dy;
            next = sp + (p / q) * (sy - sp);
        } else if sp > sx {
            next = stpmax;
        } else {
            next = stpmin;
        }
    }

    // Shrink the interval around the minimiser.
    if fp > fx {
        *other = cur;
    } else {
        if sign < 0.0 {
            *other = *best;
        }
        *best = cur;
    }
    *stp = next;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_quadratic() {
        // f(x) = sum_i (i+1) * (x_i - 1)^2
        let fg = |x: &[f64], g: &mut [f64]| {
            let mut f = 0.0;
            for (i, (xi, gi)) in x.iter().zip(g.iter_mut()).enumerate() {
                let w = (i + 1) as f64;
                f += w * (xi - 1.0).powi(2);
                *gi = 2.0 * w * (xi - 1.0);
            }
            f
        };
        let out = minimize(vec![0.0; 5], fg, &LbfgsOptions::sklearn(100, 1e-10));
        assert!(out.status.converged(), "{:?}", out.status);
        for xi in &out.x {
            assert!((xi - 1.0).abs() < 1e-8);
        }
    }

    #[test]
    fn minimises_rosenbrock() {
        let fg = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let out = minimize(vec![-1.2, 1.0], fg, &LbfgsOptions::sklearn(1000, 1e-8));
        assert!(out.status.converged(), "{:?}", out.status);
        assert!((out.x[0] - 1.0).abs() < 1e-5 && (out.x[1] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn stops_on_non_finite_objective() {
        let fg = |x: &[f64], g: &mut [f64]| {
            g[0] = -1.0;
            if x[0] > 0.5 {
                f64::NAN
            } else {
                -x[0]
            }
        };
        let out = minimize(vec![0.0], fg, &LbfgsOptions::sklearn(100, 1e-4));
        assert_eq!(out.status, LbfgsStatus::NonFinite);
        assert!(out.x[0].is_finite());
    }
}
