//! A rendering's objects, held parsed or packed as JSON.
//!
//! The render cache keeps the objects of every app it may apply again. As
//! `serde_json::Value`s, a Deployment is a dozen small B-tree maps, several times the
//! size of its JSON; at a thousand apps that was most of an idle agent's heap. The
//! cache keeps them packed instead, with what a pass asks about them without reading
//! them (how many there are and each one's apiVersion and kind), and each rendering it
//! hands out parses them only when they are read: an app found in sync
//! ([`crate::apply::Reconciler`] compares it by content hash and object count) is never
//! parsed, and the parsed form lives only as long as the rendering handed out.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::{Serialize, Serializer};
use serde_json::Value;

/// The objects of a rendering, in apply order. Reads as a slice of `Value`s
/// (`Deref`); [`Objects::len`] and [`Objects::any_kind`] answer without parsing.
#[derive(Default)]
pub struct Objects {
    held: Held,
    /// The parsed form of a packed set, made on first read.
    parsed: OnceLock<Vec<Value>>,
}

#[derive(Clone)]
enum Held {
    Parsed(Arc<Vec<Value>>),
    Packed(Arc<Packed>),
}

impl Default for Held {
    fn default() -> Held {
        Held::Parsed(Arc::default())
    }
}

/// Objects as one JSON array, with each one's (apiVersion, kind).
struct Packed {
    json: Box<[u8]>,
    kinds: Box<[(Box<str>, Box<str>)]>,
}

impl Objects {
    /// How many objects there are (nothing is parsed).
    pub fn len(&self) -> usize {
        match &self.held {
            Held::Parsed(v) => v.len(),
            Held::Packed(p) => p.kinds.len(),
        }
    }

    /// Whether there are none (nothing is parsed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any object's (apiVersion, kind) satisfies `pred` (nothing is parsed;
    /// a missing field reads as "").
    pub fn any_kind(&self, mut pred: impl FnMut(&str, &str) -> bool) -> bool {
        match &self.held {
            Held::Parsed(v) => v.iter().any(|o| {
                let (api_version, kind) = kind_of(o);
                pred(api_version, kind)
            }),
            Held::Packed(p) => p.kinds.iter().any(|(a, k)| pred(a, k)),
        }
    }

    /// The same objects for keeping: packed, when the JSON reads back as exactly
    /// these objects (it may not: serde_json parses floats to the nearest value only
    /// approximately, and refuses nesting deeper than 128); otherwise shared as they
    /// are.
    pub fn packed(&self) -> Objects {
        if let Held::Packed(_) = &self.held {
            return self.clone();
        }
        let objects: &[Value] = self;
        let Ok(json) = serde_json::to_vec(objects) else {
            return self.clone();
        };
        let reads_back = serde_json::from_slice::<Vec<Value>>(&json)
            .is_ok_and(|back| back.as_slice() == objects);
        if !reads_back {
            return self.clone();
        }
        let kinds = (objects.iter())
            .map(|o| {
                let (a, k) = kind_of(o);
                (Box::from(a), Box::from(k))
            })
            .collect();
        Objects {
            held: Held::Packed(Arc::new(Packed {
                json: json.into_boxed_slice(),
                kinds,
            })),
            parsed: OnceLock::new(),
        }
    }

    /// The bytes kept: the JSON's length when packed, else the length the JSON would
    /// have (the parsed form takes a few times that).
    pub fn weight(&self) -> usize {
        match &self.held {
            Held::Packed(p) => p.json.len(),
            Held::Parsed(v) => json_size(v),
        }
    }

    /// Whether they are held packed, and whether this handle has parsed them.
    #[cfg(test)]
    pub(crate) fn packed_and_parsed(&self) -> (bool, bool) {
        (
            matches!(self.held, Held::Packed(_)),
            self.parsed.get().is_some(),
        )
    }

    /// The objects, owned.
    pub fn into_vec(self) -> Vec<Value> {
        match self.held {
            Held::Parsed(v) => Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone()),
            Held::Packed(p) => match self.parsed.into_inner() {
                Some(v) => v,
                None => parse(&p),
            },
        }
    }
}

/// The (apiVersion, kind) of an object, "" where missing.
fn kind_of(o: &Value) -> (&str, &str) {
    (
        o["apiVersion"].as_str().unwrap_or(""),
        o["kind"].as_str().unwrap_or(""),
    )
}

/// A packed set's objects. The JSON was checked to read back as the objects when it
/// was packed ([`Objects::packed`]), and parsing the same bytes gives the same result.
fn parse(p: &Packed) -> Vec<Value> {
    serde_json::from_slice(&p.json).expect("packed objects were checked to read back")
}

/// The length of the JSON of `objects`, without building it.
fn json_size(objects: &[Value]) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, objects);
    count.0
}

impl Deref for Objects {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        match &self.held {
            Held::Parsed(v) => v,
            Held::Packed(p) => self.parsed.get_or_init(|| parse(p)),
        }
    }
}

/// A clone shares what is held and parses again on first read.
impl Clone for Objects {
    fn clone(&self) -> Objects {
        Objects {
            held: self.held.clone(),
            parsed: OnceLock::new(),
        }
    }
}

impl From<Vec<Value>> for Objects {
    fn from(objects: Vec<Value>) -> Objects {
        Objects {
            held: Held::Parsed(Arc::new(objects)),
            parsed: OnceLock::new(),
        }
    }
}

impl PartialEq for Objects {
    fn eq(&self, other: &Objects) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for Objects {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'a> IntoIterator for &'a Objects {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "web"},
                   "spec": {"replicas": 3, "ratio": 0.25}}),
        ]
    }

    #[test]
    fn packed_objects_read_back_as_the_same_and_answer_count_and_kinds_unparsed() {
        let packed = Objects::from(two()).packed();
        assert!(matches!(packed.held, Held::Packed(_)));
        assert_eq!(packed.len(), 2);
        assert!(packed.any_kind(|a, k| a == "v1" && k == "Namespace"));
        assert!(!packed.any_kind(|_, k| k == "ConfigMap"));
        assert!(
            packed.parsed.get().is_none(),
            "count and kinds parse nothing"
        );
        assert_eq!(&*packed, two().as_slice());
        assert!(packed.parsed.get().is_some());
        let again = packed.clone();
        assert!(
            again.parsed.get().is_none(),
            "a clone parses on its own read"
        );
        assert_eq!(again.into_vec(), two());
        assert_eq!(packed.weight(), serde_json::to_vec(&two()).unwrap().len());
    }

    #[test]
    fn objects_whose_json_would_not_read_back_exactly_stay_parsed() {
        // Nested deeper than serde_json reads back.
        let mut deep = json!("leaf");
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let objects = Objects::from(vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": deep}),
        ]);
        let kept = objects.packed();
        assert!(matches!(kept.held, Held::Parsed(_)));
        assert_eq!(kept, objects);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn an_empty_set_is_empty_either_way() {
        assert!(Objects::default().is_empty());
        assert!(Objects::from(Vec::new()).packed().is_empty());
    }
}
