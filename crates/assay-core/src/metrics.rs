//! Judge-quality statistics: agreement with experts, score separation, rank correlation, threshold calibration and embedding spread, as pure functions.
//!
//! PASS is `true` throughout. For precision and recall FAIL is the positive class, because a
//! check exists to catch failures. NaN scores are skipped where a function says so; nothing here
//! panics on any input.

use serde::Serialize;

/// Agreement of a judge's PASS/FAIL with an expert's, on the same pairs (true = PASS).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    pub n: usize,
    pub accuracy: f64,
    /// Cohen's kappa; `None` when both raters give one and the same verdict to every pair.
    pub kappa: Option<f64>,
    /// Of the judge's FAILs, the fraction the expert also failed; `None` if the judge never failed.
    pub fail_precision: Option<f64>,
    /// Of the expert's FAILs, the fraction the judge also failed; `None` if the expert never failed.
    pub fail_recall: Option<f64>,
    /// The pairs behind the numbers.
    pub confusion: Confusion,
}

/// The 2x2 table of judge against expert verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Confusion {
    pub both_pass: usize,
    /// The judge passed what the expert failed.
    pub judge_only_pass: usize,
    /// The judge failed what the expert passed.
    pub expert_only_pass: usize,
    pub both_fail: usize,
}

impl Confusion {
    fn of(judge_pass: &[bool], expert_pass: &[bool]) -> Self {
        let mut c = Self::default();
        for (&j, &e) in judge_pass.iter().zip(expert_pass) {
            match (j, e) {
                (true, true) => c.both_pass += 1,
                (true, false) => c.judge_only_pass += 1,
                (false, true) => c.expert_only_pass += 1,
                (false, false) => c.both_fail += 1,
            }
        }
        c
    }

    fn n(&self) -> usize {
        self.both_pass + self.judge_only_pass + self.expert_only_pass + self.both_fail
    }

    fn accuracy(&self) -> f64 {
        (self.both_pass + self.both_fail) as f64 / self.n() as f64
    }

    fn kappa(&self) -> Option<f64> {
        let n = self.n();
        // Expected agreement is 1 exactly when every pair sits in one agreeing cell; decided on
        // the counts so that float rounding cannot turn 0/0 into a huge number.
        if n == 0 || self.both_pass == n || self.both_fail == n {
            return None;
        }
        let n = n as f64;
        let observed = (self.both_pass + self.both_fail) as f64 / n;
        let judge = (self.both_pass + self.judge_only_pass) as f64 / n;
        let expert = (self.both_pass + self.expert_only_pass) as f64 / n;
        let expected = judge * expert + (1.0 - judge) * (1.0 - expert);
        Some((observed - expected) / (1.0 - expected))
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Agreement of `judge_pass` with `expert_pass`, pair by pair. `None` when empty or when the
/// lengths differ (the pairs would be misaligned, so no partial answer is given).
pub fn agreement(judge_pass: &[bool], expert_pass: &[bool]) -> Option<Agreement> {
    if judge_pass.is_empty() || judge_pass.len() != expert_pass.len() {
        return None;
    }
    let c = Confusion::of(judge_pass, expert_pass);
    Some(Agreement {
        n: c.n(),
        accuracy: c.accuracy(),
        kappa: c.kappa(),
        fail_precision: ratio(c.both_fail, c.both_fail + c.expert_only_pass),
        fail_recall: ratio(c.both_fail, c.both_fail + c.judge_only_pass),
        confusion: c,
    })
}

/// Cohen's kappa of two raters' PASS/FAIL. `None` if empty, if the lengths differ, or if the
/// expected agreement is 1 (both raters constant and identical: kappa is 0/0).
pub fn cohen_kappa(a: &[bool], b: &[bool]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    Confusion::of(a, b).kappa()
}

/// 1-based ranks of `x`, ties sharing the average of the ranks they span.
fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; their mean is the midpoint.
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// P(score of a positive > score of a negative), ties counting 1/2: the Mann-Whitney U statistic
/// over n_pos * n_neg, from one sort. NaN scores are skipped; `None` if either side is then empty.
pub fn auroc(positive: &[f64], negative: &[f64]) -> Option<f64> {
    let mut all: Vec<f64> = positive.iter().copied().filter(|v| !v.is_nan()).collect();
    let n_pos = all.len();
    all.extend(negative.iter().copied().filter(|v| !v.is_nan()));
    let n_neg = all.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let rank_sum: f64 = average_ranks(&all)[..n_pos].iter().sum();
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Spearman's rank correlation: Pearson's r on average ranks (so ties are handled). Pairs with a
/// NaN are skipped; `None` if the lengths differ, fewer than 2 pairs remain, or either side is
/// constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    let (x, y): (Vec<f64>, Vec<f64>) = x.iter().zip(y).filter(|(a, b)| !a.is_nan() && !b.is_nan()).unzip();
    if x.len() < 2 {
        return None;
    }
    let (rx, ry) = (average_ranks(&x), average_ranks(&y));
    let (mx, my) = (mean(&rx)?, mean(&ry)?);
    let (mut cov, mut vx, mut vy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        cov += (a - mx) * (b - my);
        vx += (a - mx) * (a - mx);
        vy += (b - my) * (b - my);
    }
    if vx == 0.0 || vy == 0.0 {
        return None;
    }
    // Rounding can step just past ±1.
    Some((cov / (vx * vy).sqrt()).clamp(-1.0, 1.0))
}

/// Fraction of `p_pass` that is confidently decided: `p < low` or `p > high` (NaN is not).
/// `None` if empty.
pub fn clear_fraction(p_pass: &[f64], low: f64, high: f64) -> Option<f64> {
    let clear = p_pass.iter().filter(|&&p| p < low || p > high).count();
    ratio(clear, p_pass.len())
}

/// The threshold chosen by [`calibrate_threshold`] and how the judge agrees with the expert at it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    /// The verdict is PASS iff `p >= threshold`.
    pub threshold: f64,
    pub accuracy: f64,
    pub kappa: Option<f64>,
}

/// The threshold t (verdict PASS iff p >= t) that maximises kappa against `expert_pass`, an
/// undefined kappa counting as -inf; ties go to higher accuracy, then to t closer to 0.5.
/// Candidates: 0.5, the midpoints between consecutive distinct p values, and just below the
/// smallest and just above the largest (±1e-9, clamped to [0, 1]). A NaN p is always FAIL.
/// `None` if empty, if the lengths differ, or if the expert's verdicts are all the same (a
/// threshold separates nothing then).
pub fn calibrate_threshold(p_pass: &[f64], expert_pass: &[bool]) -> Option<Calibration> {
    if p_pass.is_empty() || p_pass.len() != expert_pass.len() || !expert_pass.contains(&true) || !expert_pass.contains(&false) {
        return None;
    }
    let mut sorted: Vec<f64> = p_pass.iter().copied().filter(|p| !p.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let mut candidates = vec![0.5];
    if let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) {
        candidates.push((min - 1e-9).clamp(0.0, 1.0));
        candidates.push((max + 1e-9).clamp(0.0, 1.0));
    }
    candidates.extend(sorted.windows(2).map(|w| (w[0] + w[1]) / 2.0));

    // Each candidate is a full pass over the pairs: O(n^2) in all, fine for expert-labelled sets
    // (hundreds of pairs) and far simpler than a sweep.
    let judged = |t: f64| -> Vec<bool> { p_pass.iter().map(|&p| p >= t).collect() };
    let key = |c: &Calibration| (c.kappa.unwrap_or(f64::NEG_INFINITY), c.accuracy, -(c.threshold - 0.5).abs());
    candidates
        .into_iter()
        .map(|threshold| {
            let c = Confusion::of(&judged(threshold), expert_pass);
            Calibration { threshold, accuracy: c.accuracy(), kappa: c.kappa() }
        })
        .reduce(|best, c| if key(&c) > key(&best) { c } else { best })
}

/// How spread out a set of embeddings is: the mean of 1 - cosine(v, centroid) over the vectors,
/// 0 when all are identical. `None` with fewer than 2 vectors, differing dimensions, a zero
/// vector, or a zero centroid (the vectors cancel out, so no direction to compare with).
pub fn embedding_spread(vectors: &[Vec<f32>]) -> Option<f64> {
    let dim = vectors.first()?.len();
    if vectors.len() < 2 || vectors.iter().any(|v| v.len() != dim) {
        return None;
    }
    let mut centroid = vec![0.0f64; dim];
    for v in vectors {
        for (c, &x) in centroid.iter_mut().zip(v) {
            *c += f64::from(x);
        }
    }
    centroid.iter_mut().for_each(|c| *c /= vectors.len() as f64);
    let centroid_norm2: f64 = centroid.iter().map(|c| c * c).sum();
    let mut distances = Vec::with_capacity(vectors.len());
    for v in vectors {
        let v_norm2: f64 = v.iter().map(|&x| f64::from(x).powi(2)).sum();
        if v_norm2 == 0.0 || centroid_norm2 == 0.0 {
            return None;
        }
        let dot: f64 = v.iter().zip(&centroid).map(|(&x, c)| f64::from(x) * c).sum();
        // sqrt of the product of squared norms (not a product of two roots) makes the cosine of
        // a vector with itself exactly 1, so identical vectors give exactly 0.
        let cosine = dot / (v_norm2 * centroid_norm2).sqrt();
        distances.push((1.0 - cosine).clamp(0.0, 2.0));
    }
    mean(&distances)
}

/// Arithmetic mean; `None` if empty. NaN propagates.
pub fn mean(x: &[f64]) -> Option<f64> {
    (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64)
}

/// Of `(better, worse)` score pairs (the first labelled the better output), the fraction the
/// scores order the same way; a tie counts half. Pairs with a NaN are skipped; `None` when none
/// is left.
pub fn pairwise_accuracy(pairs: &[(f64, f64)]) -> Option<f64> {
    let scored: Vec<f64> = pairs
        .iter()
        .filter(|(b, w)| !b.is_nan() && !w.is_nan())
        .map(|(b, w)| match b.partial_cmp(w) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Less) => 0.0,
            _ => 0.5,
        })
        .collect();
    mean(&scored)
}

/// One bin of a reliability diagram: the judgments whose P(PASS) fell in `[lo, hi)` (the last
/// bin includes 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    /// Mean P(PASS) the judge gave in the bin.
    pub mean_p_pass: f64,
    /// Fraction the expert labelled PASS.
    pub observed_pass_rate: f64,
}

/// How well P(PASS) matches how often the expert says PASS: the non-empty bins of a
/// reliability diagram and the expected calibration error (ECE: the bins' gaps between mean
/// P(PASS) and observed PASS rate, weighted by their share of the judgments).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reliability {
    pub n: usize,
    pub ece: f64,
    pub bins: Vec<ReliabilityBin>,
}

/// Bins of a reliability diagram.
pub const RELIABILITY_BINS: usize = 10;

/// The reliability of `p_pass` against `expert_pass` in `RELIABILITY_BINS` equal bins over
/// [0, 1]. NaN p are skipped. `None` when nothing is left or the lengths differ.
pub fn reliability(p_pass: &[f64], expert_pass: &[bool]) -> Option<Reliability> {
    if p_pass.len() != expert_pass.len() {
        return None;
    }
    // Per bin: count, sum of p, PASS labels.
    let mut acc = [(0usize, 0f64, 0usize); RELIABILITY_BINS];
    for (&p, &pass) in p_pass.iter().zip(expert_pass).filter(|(p, _)| !p.is_nan()) {
        let p = p.clamp(0.0, 1.0);
        let bin = &mut acc[((p * RELIABILITY_BINS as f64) as usize).min(RELIABILITY_BINS - 1)];
        bin.0 += 1;
        bin.1 += p;
        bin.2 += usize::from(pass);
    }
    let n: usize = acc.iter().map(|b| b.0).sum();
    if n == 0 {
        return None;
    }
    let width = 1.0 / RELIABILITY_BINS as f64;
    let bins: Vec<ReliabilityBin> = acc
        .iter()
        .enumerate()
        .filter(|(_, b)| b.0 > 0)
        .map(|(i, &(count, sum, passes))| ReliabilityBin {
            lo: i as f64 * width,
            hi: (i + 1) as f64 * width,
            n: count,
            mean_p_pass: sum / count as f64,
            observed_pass_rate: passes as f64 / count as f64,
        })
        .collect();
    let ece = bins.iter().map(|b| b.n as f64 / n as f64 * (b.mean_p_pass - b.observed_pass_rate).abs()).sum();
    Some(Reliability { n, ece, bins })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Expands a 2x2 table (both pass, judge-only pass, expert-only pass, both fail) into pairs.
    fn table(pp: usize, pf: usize, fp: usize, ff: usize) -> (Vec<bool>, Vec<bool>) {
        let cells = [(true, true, pp), (true, false, pf), (false, true, fp), (false, false, ff)];
        cells.iter().flat_map(|&(j, e, k)| std::iter::repeat_n((j, e), k)).unzip()
    }

    #[test]
    fn kappa_of_a_known_table() {
        // po = 35/50 = 0.7; judge passes 25/50, expert 30/50: pe = 0.5*0.6 + 0.5*0.4 = 0.5.
        let (j, e) = table(20, 5, 10, 15);
        assert!(close(cohen_kappa(&j, &e).unwrap(), 0.4));
        assert!(close(cohen_kappa(&e, &j).unwrap(), 0.4), "kappa is symmetric");
    }

    #[test]
    fn kappa_edge_cases() {
        assert_eq!(cohen_kappa(&[], &[]), None);
        assert_eq!(cohen_kappa(&[true], &[true, false]), None);
        assert_eq!(cohen_kappa(&[true; 4], &[true; 4]), None);
        assert_eq!(cohen_kappa(&[false; 4], &[false; 4]), None);
        // A constant judge against a varying expert agrees only by chance.
        assert!(close(cohen_kappa(&[false; 4], &[true, false, true, false]).unwrap(), 0.0));
        assert!(close(cohen_kappa(&[true, false], &[false, true]).unwrap(), -1.0));
        assert!(close(cohen_kappa(&[true, false, true], &[true, false, true]).unwrap(), 1.0));
    }

    #[test]
    fn agreement_counts_fail_as_positive() {
        let (j, e) = table(20, 5, 10, 15);
        let a = agreement(&j, &e).unwrap();
        assert_eq!(a.n, 50);
        assert!(close(a.accuracy, 0.7));
        assert!(close(a.kappa.unwrap(), 0.4));
        // The judge failed 25 (15 rightly); the expert failed 20 (15 caught).
        assert!(close(a.fail_precision.unwrap(), 15.0 / 25.0));
        assert!(close(a.fail_recall.unwrap(), 15.0 / 20.0));
        assert_eq!(a.confusion, Confusion { both_pass: 20, judge_only_pass: 5, expert_only_pass: 10, both_fail: 15 });

        let all_pass = agreement(&[true, true], &[true, true]).unwrap();
        assert_eq!((all_pass.kappa, all_pass.fail_precision, all_pass.fail_recall), (None, None, None));
        assert!(close(all_pass.accuracy, 1.0));
        assert_eq!(agreement(&[], &[]), None);
        assert_eq!(agreement(&[true], &[true, true]), None);
    }

    #[test]
    fn auroc_with_ties() {
        assert_eq!(auroc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(auroc(&[0.1], &[0.9]), Some(0.0));
        assert_eq!(auroc(&[0.5, 0.5], &[0.5]), Some(0.5));
        // Pairs: (0.8,0.3) 1, (0.8,0.5) 1, (0.5,0.3) 1, (0.5,0.5) 1/2, (0.2,*) 0 => 3.5 / 6.
        assert!(close(auroc(&[0.8, 0.5, 0.2], &[0.3, 0.5]).unwrap(), 3.5 / 6.0));
        assert!(close(auroc(&[0.8, f64::NAN], &[0.3, f64::NAN]).unwrap(), 1.0));
        assert_eq!(auroc(&[], &[0.5]), None);
        assert_eq!(auroc(&[0.5], &[f64::NAN]), None);
    }

    #[test]
    fn auroc_matches_pairwise_count() {
        let pos = [0.1, 0.4, 0.4, 0.7, 0.9, 0.9, 0.35];
        let neg = [0.0, 0.4, 0.2, 0.9, 0.35, 0.6];
        let wins: f64 = pos
            .iter()
            .flat_map(|p| {
                neg.iter().map(move |n| {
                    if p > n {
                        1.0
                    } else if p == n {
                        0.5
                    } else {
                        0.0
                    }
                })
            })
            .sum();
        assert!(close(auroc(&pos, &neg).unwrap(), wins / (pos.len() * neg.len()) as f64));
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(average_ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        assert_eq!(average_ranks(&[]), Vec::<f64>::new());
    }

    #[test]
    fn spearman_cases() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        // Monotone but not linear is still 1.
        assert!(close(spearman(&x, &[1.0, 4.0, 9.0, 16.0, 100.0]).unwrap(), 1.0));
        assert!(close(spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap(), -1.0));
        // Ranks of y with a tie: 1, 2.5, 2.5, 4. Ranks of x: 1..4, mean 2.5.
        // cov = 2.25 + 0 + 0 + 2.25 = 4.5; var x = 5, var y = 4.5 => r = 4.5 / sqrt(22.5).
        let r = spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 20.0, 30.0]).unwrap();
        assert!(close(r, 4.5 / 22.5f64.sqrt()));
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[7.0, 7.0, 7.0]), None);
        assert!(close(spearman(&[1.0, f64::NAN, 2.0], &[3.0, 0.0, 4.0]).unwrap(), 1.0));
    }

    #[test]
    fn clear_fraction_cases() {
        assert_eq!(clear_fraction(&[0.05, 0.5, 0.95, 0.2, f64::NAN], 0.1, 0.9), Some(0.4));
        // The bounds themselves are not clear.
        assert_eq!(clear_fraction(&[0.1, 0.9], 0.1, 0.9), Some(0.0));
        assert_eq!(clear_fraction(&[], 0.1, 0.9), None);
    }

    #[test]
    fn calibration_picks_the_separating_threshold() {
        // Expert PASS exactly for p >= 0.3: 0.5 would fail 0.3 and 0.4; the midpoint 0.25 separates.
        let p = [0.1, 0.2, 0.3, 0.4, 0.8, 0.9];
        let e = [false, false, true, true, true, true];
        let c = calibrate_threshold(&p, &e).unwrap();
        assert!(close(c.threshold, 0.25));
        assert!(close(c.accuracy, 1.0));
        assert!(close(c.kappa.unwrap(), 1.0));
    }

    #[test]
    fn calibration_ties_and_edges() {
        // Already separated at 0.5: the midpoint 0.45 and 0.5 both give kappa 1; 0.5 is closer.
        let c = calibrate_threshold(&[0.2, 0.4, 0.5, 0.7], &[false, false, true, true]).unwrap();
        assert_eq!(c.threshold, 0.5);
        // Inverted scores: no threshold beats a constant verdict, whose kappa is 0.
        let c = calibrate_threshold(&[0.9, 0.1], &[false, true]).unwrap();
        assert!(close(c.kappa.unwrap(), 0.0));
        assert!(close(c.accuracy, 0.5));
        // A constant expert separates nothing: any threshold under the lowest P(PASS) matches
        // every label, so none is calibrated.
        assert_eq!(calibrate_threshold(&[0.2, 0.6], &[true, true]), None);
        assert_eq!(calibrate_threshold(&[0.2, 0.6], &[false, false]), None);
        // NaN is always FAIL and is not a candidate.
        let c = calibrate_threshold(&[f64::NAN, 0.2, 0.8], &[false, false, true]).unwrap();
        assert!(close(c.kappa.unwrap(), 1.0));
        assert_eq!(calibrate_threshold(&[], &[]), None);
        assert_eq!(calibrate_threshold(&[0.5], &[true, false]), None);
    }

    #[test]
    fn embedding_spread_cases() {
        let v = vec![0.3f32, -1.7, 2.9];
        assert_eq!(embedding_spread(&[v.clone(), v.clone(), v]), Some(0.0));
        // Orthogonal unit vectors: the centroid (0.5, 0.5) is 45 degrees from each.
        let s = embedding_spread(&[vec![1.0, 0.0], vec![0.0, 1.0]]).unwrap();
        assert!(close(s, 1.0 - std::f64::consts::FRAC_1_SQRT_2));
        // Scale does not matter, only direction.
        assert_eq!(embedding_spread(&[vec![1.0, 1.0], vec![3.0, 3.0]]), Some(0.0));
        assert_eq!(embedding_spread(&[vec![1.0, 0.0]]), None);
        assert_eq!(embedding_spread(&[vec![1.0, 0.0], vec![0.0, 0.0]]), None);
        assert_eq!(embedding_spread(&[vec![1.0, 0.0], vec![-1.0, 0.0]]), None);
        assert_eq!(embedding_spread(&[vec![1.0, 0.0], vec![1.0]]), None);
        assert_eq!(embedding_spread(&[]), None);
    }

    #[test]
    fn mean_cases() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn reliability_bins_and_ece() {
        // Bin [0.9, 1]: p 0.9 and 1.0 (1.0 belongs to the last bin), both PASS: gap 0.05.
        // Bin [0.2, 0.3): p 0.2, 0.2, 0.2, 0.2, one PASS: gap |0.2 - 0.25| = 0.05.
        let p = [0.9, 1.0, 0.2, 0.2, 0.2, 0.2, f64::NAN];
        let pass = [true, true, true, false, false, false, true];
        let r = reliability(&p, &pass).unwrap();
        assert_eq!(r.n, 6, "NaN is skipped");
        assert_eq!(r.bins.len(), 2);
        assert!(close(r.bins[0].lo, 0.2) && r.bins[0].n == 4 && close(r.bins[0].observed_pass_rate, 0.25));
        assert!(close(r.bins[1].lo, 0.9) && close(r.bins[1].hi, 1.0) && close(r.bins[1].mean_p_pass, 0.95));
        assert!(close(r.ece, 4.0 / 6.0 * 0.05 + 2.0 / 6.0 * 0.05), "{}", r.ece);
        // A judge whose P(PASS) equals the observed rate in every bin has ECE 0.
        assert!(close(reliability(&[0.5, 0.5], &[true, false]).unwrap().ece, 0.0));
        assert_eq!(reliability(&[0.5], &[true, false]), None);
        assert_eq!(reliability(&[f64::NAN], &[true]), None);
        assert_eq!(reliability(&[], &[]), None);
    }

    #[test]
    fn pairwise_accuracy_counts_ties_half() {
        assert_eq!(pairwise_accuracy(&[(0.9, 0.1), (0.2, 0.8), (0.5, 0.5), (f64::NAN, 0.1)]), Some(0.5));
        assert_eq!(pairwise_accuracy(&[(1.0, 0.0)]), Some(1.0));
        assert_eq!(pairwise_accuracy(&[]), None);
    }
}
