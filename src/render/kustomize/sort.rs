//! The output order: kustomize's `legacy` order (by default, or with the kinds of
//! `sortOptions.legacySortOptions` first and last) or `fifo` (the order the build
//! accumulated objects in).

use std::collections::HashMap;

use super::KustomizeError;
use super::kustomization::SortOptions;
use super::resource::{ResId, Resource, legacy_order, legacy_order_by};

/// Sorts the built objects as the top kustomization's `sortOptions` ask.
pub fn sort(
    res: Vec<Resource>,
    options: Option<&SortOptions>,
    file: &str,
) -> Result<Vec<Resource>, KustomizeError> {
    let bad = |message: String| KustomizeError::Kustomization {
        dir: file.to_string(),
        message,
    };
    let mut keyed: Vec<(ResId, Resource)> = res.into_iter().map(|r| (r.cur_id(), r)).collect();
    match options {
        None => keyed.sort_by(|a, b| legacy_order(&a.0, &b.0)),
        Some(o) => match o.order.as_deref().unwrap_or("") {
            "fifo" => {
                if o.legacy_sort_options.is_some() {
                    return Err(bad(
                        "the field 'sortOptions.legacySortOptions' is set but the selected sort order is 'fifo', not 'legacy'"
                            .into(),
                    ));
                }
            }
            "legacy" => match &o.legacy_sort_options {
                None => keyed.sort_by(|a, b| legacy_order(&a.0, &b.0)),
                Some(l) => {
                    let mut ranks: HashMap<&str, i64> = HashMap::new();
                    let n = l.order_first.len() as i64;
                    for (i, k) in l.order_first.iter().enumerate() {
                        ranks.insert(k, i as i64 - n);
                    }
                    for (i, k) in l.order_last.iter().enumerate() {
                        ranks.insert(k, 1 + i as i64);
                    }
                    let rank = |k: &str| ranks.get(k).copied().unwrap_or(0);
                    keyed.sort_by(|a, b| legacy_order_by(&a.0, &b.0, &rank));
                }
            },
            other => {
                return Err(bad(format!(
                    "the field 'sortOptions.order' must be one of [fifo, legacy], not '{other}'"
                )));
            }
        },
    }
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}
