//! How far a test split's headline figure can be trusted: the figure over resamples of the
//! split's units (pairs for LLMBar, outputs for the rest), drawn with replacement, the same
//! draws for every set so that two sets are compared on the same resampled split.

use assay_core::metrics::{auroc, pairwise_accuracy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// What the headline figure is computed over.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// The scores of a pair's labelled better and worse output (pairwise accuracy).
    Pair { better: f64, worse: f64 },
    /// An output's score and whether the expert accepts it (AUROC).
    Output { score: f64, good: bool },
}

/// Pairwise accuracy over pairs, or AUROC over outputs (`None` when a class is missing).
pub fn headline<'a>(units: impl IntoIterator<Item = &'a Unit>) -> Option<f64> {
    let (mut pairs, mut good, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for u in units {
        match *u {
            Unit::Pair { better, worse } => pairs.push((better, worse)),
            Unit::Output { score, good: true } => good.push(score),
            Unit::Output { score, good: false } => bad.push(score),
        }
    }
    if pairs.is_empty() {
        auroc(&good, &bad)
    } else {
        pairwise_accuracy(&pairs)
    }
}

/// Resampled figures of several sets over the same units.
#[derive(Debug, Clone, Serialize)]
pub struct Resampled {
    /// Per set: the 2.5th and 97.5th percentile of its figure.
    pub interval: Vec<Option<[f64; 2]>>,
    /// Per set and other set: the share of resamples where the first scores strictly higher.
    #[serde(skip)]
    pub higher: Vec<Vec<f64>>,
}

/// `resamples` draws of `units[set]`'s indices (all sets hold the same units in the same order).
pub fn resample(units: &[Vec<Unit>], resamples: usize, seed: u64) -> Resampled {
    let n = units.first().map_or(0, Vec::len);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut figures: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(resamples); units.len()];
    for _ in 0..resamples {
        let draw: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        for (set, u) in units.iter().enumerate() {
            figures[set].push(headline(draw.iter().map(|&i| &u[i])));
        }
    }
    let interval = figures
        .iter()
        .map(|f| {
            let mut known: Vec<f64> = f.iter().flatten().copied().collect();
            known.sort_by(f64::total_cmp);
            let at = |q: f64| known[((known.len() - 1) as f64 * q).round() as usize];
            (!known.is_empty()).then(|| [at(0.025), at(0.975)])
        })
        .collect();
    let higher = figures
        .iter()
        .map(|mine| figures.iter().map(|other| mine.iter().zip(other).filter(|(a, b)| matches!((a, b), (Some(a), Some(b)) if a > b)).count() as f64 / resamples.max(1) as f64).collect())
        .collect();
    Resampled { interval, higher }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headline_is_pairwise_accuracy_or_auroc() {
        let pairs = [Unit::Pair { better: 0.9, worse: 0.1 }, Unit::Pair { better: 0.2, worse: 0.8 }, Unit::Pair { better: 0.5, worse: 0.5 }];
        assert_eq!(headline(&pairs), Some(0.5));
        let outputs = [Unit::Output { score: 0.9, good: true }, Unit::Output { score: 0.4, good: true }, Unit::Output { score: 0.5, good: false }];
        assert_eq!(headline(&outputs), Some(0.5));
        assert_eq!(headline(&outputs[..2]), None, "no bad output");
    }

    #[test]
    fn resampling_brackets_the_figure_and_compares_sets_on_the_same_draws() {
        let perfect: Vec<Unit> = (0..10).map(|i| Unit::Pair { better: 1.0, worse: i as f64 / 20.0 }).collect();
        let mixed: Vec<Unit> = (0..10).map(|i| if i % 2 == 0 { Unit::Pair { better: 1.0, worse: 0.0 } } else { Unit::Pair { better: 0.0, worse: 1.0 } }).collect();
        let r = resample(&[perfect.clone(), mixed.clone()], 500, 7);
        assert_eq!(r.interval[0], Some([1.0, 1.0]));
        let [low, high] = r.interval[1].unwrap();
        assert!(low < 0.5 && high > 0.5 && (0.0..=1.0).contains(&low) && high <= 1.0, "{low} {high}");
        // The perfect set is higher on nearly every draw, never lower; a set is never above itself.
        assert!(r.higher[0][1] > 0.95 && r.higher[1][0] == 0.0 && r.higher[0][0] == 0.0);
        // Same seed, same draws.
        assert_eq!(resample(&[perfect, mixed], 500, 7).interval, r.interval);
    }
}
