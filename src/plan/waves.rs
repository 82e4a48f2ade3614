//! Waves (DESIGN §4.2): the canary clusters first, then each stage's remaining
//! clusters in `sha256(name)` order, split by the batch ratio with cumulative ceiling
//! rounding. Every agent computes the same waves from the same commit.

use sha2::{Digest, Sha256};

use crate::fleet::{App, Fleet, targets_cluster};

/// Batch sizes for `n` clusters and ratio `ratio`: batch `i` ends at
/// `ceil(n * sum(ratio[..=i]) / sum(ratio))`, so the first batch is never empty when
/// `n > 0`; empty batches are dropped. The arithmetic is done in 128 bits so no ratio
/// the model accepts (or any other) can overflow it, and the sizes always add up to `n`.
pub fn batch_sizes(n: usize, ratio: &[u64]) -> Vec<usize> {
    let total: u128 = ratio.iter().map(|r| u128::from(*r)).sum();
    if n == 0 || total == 0 {
        return Vec::new();
    }
    let mut sizes = Vec::new();
    let mut cum = 0u128;
    let mut prev_end = 0usize;
    for r in ratio {
        cum += u128::from(*r);
        let end = ((n as u128 * cum).div_ceil(total)).min(n as u128) as usize;
        if end > prev_end {
            sizes.push(end - prev_end);
        }
        prev_end = end;
    }
    sizes
}

fn order_key(name: &str) -> [u8; 32] {
    Sha256::digest(name.as_bytes()).into()
}

/// The waves of `app`: lists of cluster names, wave 0 first.
pub fn waves_for(fleet: &Fleet, app: &App) -> Vec<Vec<String>> {
    let targeted: Vec<&crate::fleet::Cluster> = fleet
        .clusters
        .iter()
        .filter(|c| targets_cluster(app, c))
        .collect();
    let mut canary: Vec<String> = Vec::new();
    for c in &app.rollout.canary {
        if targeted.iter().any(|t| t.name == c.value) && !canary.contains(&c.value) {
            canary.push(c.value.clone());
        }
    }
    let mut waves = Vec::new();
    if !canary.is_empty() {
        waves.push(canary.clone());
    }
    for stage in &fleet.settings.stages {
        let mut members: Vec<&str> = targeted
            .iter()
            .filter(|c| c.stage == *stage && !canary.contains(&c.name))
            .map(|c| c.name.as_str())
            .collect();
        members.sort_by_key(|n| order_key(n));
        let mut start = 0;
        for size in batch_sizes(members.len(), &app.rollout.batches) {
            waves.push(
                members[start..start + size]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
            start += size;
        }
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_clusters_at_1_2_7_are_1_2_7() {
        assert_eq!(batch_sizes(10, &[1, 2, 7]), vec![1, 2, 7]);
    }

    #[test]
    fn sizes_for_1_to_40_clusters_cover_all_and_start_non_empty() {
        for ratio in [
            vec![1, 2, 7],
            vec![1, 1],
            vec![1],
            vec![3, 1],
            vec![1, 1, 1, 1, 1],
            vec![5, 5],
        ] {
            for n in 1..=40 {
                let sizes = batch_sizes(n, &ratio);
                assert_eq!(sizes.iter().sum::<usize>(), n, "n={n} ratio={ratio:?}");
                assert!(sizes[0] >= 1);
                assert!(sizes.len() <= ratio.len());
                assert!(sizes.iter().all(|s| *s > 0));
            }
        }
        assert_eq!(batch_sizes(1, &[1, 2, 7]), vec![1]);
        assert_eq!(batch_sizes(2, &[1, 2, 7]), vec![1, 1]);
        assert_eq!(batch_sizes(3, &[1, 2, 7]), vec![1, 2]);
        assert_eq!(batch_sizes(20, &[1, 2, 7]), vec![2, 4, 14]);
        assert_eq!(batch_sizes(5, &[1, 1]), vec![3, 2]);
    }
}
