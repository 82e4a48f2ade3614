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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::kustomize::kustomization::LegacySortOptions;
    use proptest::prelude::*;

    fn resource(api: &str, kind: &str, ns: &str, name: &str) -> Resource {
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), name.into());
        if !ns.is_empty() {
            meta.insert("namespace".into(), ns.into());
        }
        let obj = serde_json::json!({"apiVersion": api, "kind": kind, "metadata": meta});
        Resource::new(obj.as_object().unwrap().clone(), "test")
    }

    fn ids() -> impl Strategy<Value = Vec<(String, String, String, String)>> {
        proptest::collection::vec(
            (
                prop::sample::select(vec!["v1", "apps/v1", "example.com/v1", "batch/v1"]),
                prop::sample::select(vec![
                    "Namespace",
                    "ConfigMap",
                    "Deployment",
                    "Job",
                    "Widget",
                    "Service",
                    "ValidatingWebhookConfiguration",
                ]),
                prop::sample::select(vec!["", "a", "b"]),
                "[a-c]{1,2}",
            )
                .prop_map(|(a, k, n, m)| (a.to_string(), k.to_string(), n.to_string(), m)),
            0..20,
        )
    }

    fn options() -> impl Strategy<Value = Option<SortOptions>> {
        let kinds = prop::sample::subsequence(
            vec![
                "Namespace",
                "ConfigMap",
                "Deployment",
                "Job",
                "Widget",
                "Service",
            ],
            0..4,
        );
        prop_oneof![
            Just(None),
            (kinds.clone(), kinds).prop_map(|(f, l)| Some(SortOptions {
                order: Some("legacy".into()),
                legacy_sort_options: Some(LegacySortOptions {
                    order_first: f.into_iter().map(String::from).collect(),
                    order_last: l.into_iter().map(String::from).collect(),
                }),
            })),
        ]
    }

    proptest! {
        /// The legacy order is total: the output does not depend on the input order,
        /// and it is sorted under the same comparison.
        #[test]
        fn legacy_sort_order_is_total(list in ids(), opts in options(), seed in any::<u64>()) {
            let mut unique = std::collections::HashSet::new();
            let list: Vec<_> = list.into_iter().filter(|t| unique.insert(t.clone())).collect();
            let make = |l: &[(String, String, String, String)]| -> Vec<Resource> {
                l.iter().map(|(a, k, n, m)| resource(a, k, n, m)).collect()
            };
            let mut shuffled = list.clone();
            let len = shuffled.len();
            if len > 1 {
                let mut x = seed;
                for i in (1..len).rev() {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    shuffled.swap(i, (x >> 33) as usize % (i + 1));
                }
            }
            let a = sort(make(&list), opts.as_ref(), "k").unwrap();
            let b = sort(make(&shuffled), opts.as_ref(), "k").unwrap();
            let ida: Vec<ResId> = a.iter().map(Resource::cur_id).collect();
            let idb: Vec<ResId> = b.iter().map(Resource::cur_id).collect();
            prop_assert_eq!(&ida, &idb);
            if opts.is_none() {
                for w in ida.windows(2) {
                    prop_assert_eq!(legacy_order(&w[0], &w[1]), std::cmp::Ordering::Less);
                }
            }
        }

        /// fifo keeps the accumulated order.
        #[test]
        fn fifo_keeps_the_build_order(list in ids()) {
            let res: Vec<Resource> = list.iter().map(|(a, k, n, m)| resource(a, k, n, m)).collect();
            let before: Vec<ResId> = res.iter().map(Resource::cur_id).collect();
            let opts = SortOptions { order: Some("fifo".into()), legacy_sort_options: None };
            let after: Vec<ResId> = sort(res, Some(&opts), "k").unwrap().iter().map(Resource::cur_id).collect();
            prop_assert_eq!(before, after);
        }
    }
}
