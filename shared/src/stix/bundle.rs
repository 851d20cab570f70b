//! Bundle composition: what the bundler does to a page before it reaches a consumer.
//!
//! A page's objects are deduplicated by id, put in dependency order (marking definitions
//! and identities first, then domain objects and observables, then relationships and
//! sightings, then containers such as reports), and packed greedily into bundles whose
//! serialized size stays within the message limit. Each bundle carries the author identity
//! and marking definitions its objects reference, so every bundle stands alone.
//!
//! Ordering is by rank, not by a full graph sort: it puts every reference that points to
//! another rank before its dependant, which covers the objects feeds produce. References
//! between objects of one rank (an observable pointing at another) keep source order.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::StixObject;

/// Bytes of `{"type":"bundle","id":"bundle--<uuid>","objects":[` and `]}` (82; this was
/// once 64, which let a full bundle overrun the limit by a few bytes).
const BUNDLE_OVERHEAD: usize =
    r#"{"type":"bundle","id":"bundle--","objects":[]}"#.len() + uuid::fmt::Hyphenated::LENGTH;

/// One serialized bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// The bundle's JSON.
    pub json: Vec<u8>,
    /// Objects in it, support objects included.
    pub objects: usize,
    /// A single object larger than the limit, alone in its bundle; the sink must carry it
    /// by other means (a claim check) since nothing is ever truncated.
    pub oversize: bool,
}

/// The rank that orders dependencies before dependants.
fn rank(object: &StixObject) -> u8 {
    match object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "marking-definition" | "extension-definition" | "language-content" => 0,
        "identity" => 1,
        "relationship" | "sighting" => 3,
        "report" | "note" | "opinion" | "grouping" | "observed-data" => 4,
        _ => 2,
    }
}

fn refs_of(object: &StixObject) -> impl Iterator<Item = &str> {
    let created_by = object.get("created_by_ref").and_then(Value::as_str);
    let markings = object
        .get("object_marking_refs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    created_by.into_iter().chain(markings)
}

/// Packs `objects` into bundles of at most `max_bytes` each (see the module docs).
/// `seed` makes bundle ids deterministic, so a re-delivered page yields identical bundles.
///
/// Each object is serialized once, straight into the body of the bundle being filled; only
/// the object that does not fit is moved to the next bundle. Support objects (a handful:
/// the author and the markings) are looked up in a short list rather than hashed.
pub fn compose(
    objects: Vec<StixObject>,
    support: &[StixObject],
    max_bytes: usize,
    seed: &str,
) -> Vec<Composed> {
    let ordered = order_by_rank(dedupe(objects));
    let support: Vec<(&str, Vec<u8>)> = support
        .iter()
        .map(|o| (super::object_id(o), to_json(o)))
        .collect();
    let support_index = |id: &str| support.iter().position(|(s, _)| *s == id);

    let mut out = Vec::new();
    let mut bundle = Filling::new(max_bytes);
    let mut refs: Vec<usize> = Vec::new();
    for object in &ordered {
        if bundle.body.capacity() == 0 {
            // Sized once for a full bundle, rather than grown step by step.
            bundle.body.reserve(max_bytes.min(1 << 20));
        }
        let start = bundle.body.len();
        if bundle.count > 0 {
            bundle.body.push(b',');
        }
        let json_start = bundle.body.len();
        // Writing a map of JSON values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut bundle.body, object);
        let len = bundle.body.len() - json_start;

        refs.clear();
        for r in refs_of(object) {
            if let Some(i) = support_index(r) {
                if !refs.contains(&i) {
                    refs.push(i);
                }
            }
        }
        let extra: usize = refs
            .iter()
            .filter(|i| !bundle.needed.contains(i) && !bundle.present.contains(i))
            .map(|&i| support[i].1.len() + 1)
            .sum();
        if bundle.count > 0 && bundle.size + len + 1 + extra > max_bytes {
            // The object does not fit: close the bundle without it, and start the next
            // one with it and the support objects it needs.
            let json = bundle.body.split_off(json_start);
            bundle.body.truncate(start);
            out.push(bundle.finish(&support, seed, out.len()));
            bundle.body.extend_from_slice(&json);
            bundle.size += refs.iter().map(|&i| support[i].1.len() + 1).sum::<usize>();
            bundle.needed.extend_from_slice(&refs);
        } else {
            bundle.size += extra;
            for &i in &refs {
                if !bundle.needed.contains(&i) && !bundle.present.contains(&i) {
                    bundle.needed.push(i);
                }
            }
        }
        bundle.size += len + 1;
        bundle.count += 1;
        if let Some(i) = support_index(super::object_id(object)) {
            bundle.present.push(i);
        }
    }
    if bundle.count > 0 {
        out.push(bundle.finish(&support, seed, out.len()));
    }
    out
}

/// The bundle being filled.
struct Filling {
    /// The objects' JSON, comma-separated, without the bundle's framing.
    body: Vec<u8>,
    /// Objects in `body`.
    count: usize,
    /// Support objects the body references, by index, in the order first needed.
    needed: Vec<usize>,
    /// Support objects that are themselves in the body (never added twice).
    present: Vec<usize>,
    /// The bundle's size so far, framing and support objects included.
    size: usize,
    max_bytes: usize,
}

impl Filling {
    fn new(max_bytes: usize) -> Filling {
        Filling {
            body: Vec::new(),
            count: 0,
            needed: Vec::new(),
            present: Vec::new(),
            size: BUNDLE_OVERHEAD,
            max_bytes,
        }
    }

    /// Frames the body as a bundle (support objects first) and empties it for the next.
    fn finish(&mut self, support: &[(&str, Vec<u8>)], seed: &str, index: usize) -> Composed {
        let bundle_id = uuid::Uuid::new_v5(
            &super::ids::NAMESPACE,
            format!("feedstix-bundle/{seed}/{index}").as_bytes(),
        );
        // The prefix (framing and support objects) is known only now; it is moved in
        // front of the body inside the body's own buffer, which becomes the bundle.
        let mut prefix =
            format!(r#"{{"type":"bundle","id":"bundle--{bundle_id}","objects":["#).into_bytes();
        let mut carried = 0;
        for &i in self.needed.iter().filter(|i| !self.present.contains(i)) {
            if carried > 0 {
                prefix.push(b',');
            }
            prefix.extend_from_slice(&support[i].1);
            carried += 1;
        }
        if carried > 0 && self.count > 0 {
            prefix.push(b',');
        }
        let mut json = std::mem::take(&mut self.body);
        json.splice(0..0, prefix);
        json.extend_from_slice(b"]}");
        let composed = Composed {
            oversize: json.len() > self.max_bytes,
            objects: carried + self.count,
            json,
        };
        self.count = 0;
        self.needed.clear();
        self.present.clear();
        self.size = BUNDLE_OVERHEAD;
        composed
    }
}

/// Puts objects in rank order, keeping source order within a rank: one pass that reads
/// each object's type once, where a comparison sort would read it at every comparison.
fn order_by_rank(objects: Vec<StixObject>) -> Vec<StixObject> {
    let ranks: Vec<u8> = objects.iter().map(rank).collect();
    if ranks.windows(2).all(|w| w[0] <= w[1]) {
        return objects;
    }
    let mut by_rank: [Vec<StixObject>; 5] = Default::default();
    for (object, r) in objects.into_iter().zip(ranks) {
        by_rank[usize::from(r)].push(object);
    }
    by_rank.into_iter().flatten().collect()
}

/// Drops repeated ids: the last copy wins (within a page, later means newer) and takes the
/// place of the first. Ids are borrowed for the check, never copied.
fn dedupe(objects: Vec<StixObject>) -> Vec<StixObject> {
    let order: Option<Vec<usize>> = {
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(objects.len());
        for (i, o) in objects.iter().enumerate() {
            last.insert(super::object_id(o), i);
        }
        (last.len() < objects.len()).then(|| {
            let mut placed: HashSet<&str> = HashSet::with_capacity(last.len());
            objects
                .iter()
                .filter(|o| placed.insert(super::object_id(o)))
                .map(|o| last[super::object_id(o)])
                .collect()
        })
    };
    match order {
        None => objects,
        Some(order) => {
            let mut slots: Vec<Option<StixObject>> = objects.into_iter().map(Some).collect();
            order.into_iter().filter_map(|i| slots[i].take()).collect()
        }
    }
}

fn to_json(object: &StixObject) -> Vec<u8> {
    // Serializing a map of JSON values cannot fail.
    serde_json::to_vec(object).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stix::object::{into_object, value_observable};
    use crate::stix::{Provenance, Tlp};
    use serde_json::json;

    fn parse(c: &Composed) -> Vec<StixObject> {
        let v: Value = serde_json::from_slice(&c.json).unwrap();
        assert_eq!(v["type"], "bundle");
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn dedupes_orders_and_adds_support() {
        let p = Provenance {
            author: Some("abuse.ch".into()),
            markings: vec![Tlp::Green],
        };
        let mut rel = into_object(json!({"type": "relationship", "id": "relationship--1"}));
        p.apply(&mut rel);
        let obs = value_observable("ipv4-addr", "192.0.2.1", &p);
        let objects = vec![rel.clone(), obs.clone(), obs.clone()];
        let bundles = compose(objects, &p.objects(), 256 * 1024, "t");
        assert_eq!(bundles.len(), 1);
        let got = parse(&bundles[0]);
        let types: Vec<&str> = got.iter().map(|o| o["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "marking-definition",
                "identity",
                "ipv4-addr",
                "relationship"
            ]
        );
    }

    #[test]
    fn splits_within_limit_and_loses_nothing() {
        let p = Provenance {
            author: None,
            markings: vec![Tlp::Amber],
        };
        let objects: Vec<StixObject> = (0..2_000)
            .map(|i| value_observable("ipv4-addr", &format!("198.51.100.{}", i % 250), &p))
            .chain(
                (0..2_000)
                    .map(|i| value_observable("domain-name", &format!("d{i}.example.test"), &p)),
            )
            .collect();
        let bundles = compose(objects, &p.objects(), 16 * 1024, "t");
        assert!(bundles.len() > 5);
        let mut seen = HashSet::new();
        for b in &bundles {
            assert!(
                b.json.len() <= 16 * 1024,
                "bundle of {} bytes",
                b.json.len()
            );
            assert!(!b.oversize);
            let objs = parse(b);
            // Every bundle that has marked objects carries the marking definition.
            assert_eq!(
                objs.iter()
                    .filter(|o| o["type"] == "marking-definition")
                    .count(),
                1
            );
            for o in objs {
                seen.insert(o["id"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(seen.len(), 250 + 2_000 + 1);
    }

    #[test]
    fn oversize_object_travels_alone() {
        let big =
            into_object(json!({"type": "note", "id": "note--1", "content": "x".repeat(40_000)}));
        let small =
            into_object(json!({"type": "ipv4-addr", "id": "ipv4-addr--1", "value": "192.0.2.1"}));
        let bundles = compose(vec![small, big], &[], 16 * 1024, "t");
        assert_eq!(bundles.len(), 2);
        assert!(!bundles[0].oversize);
        assert!(bundles[1].oversize);
        assert_eq!(parse(&bundles[1]).len(), 1);
    }

    #[test]
    fn bundle_ids_are_deterministic() {
        let o =
            into_object(json!({"type": "ipv4-addr", "id": "ipv4-addr--1", "value": "192.0.2.1"}));
        let a = compose(vec![o.clone()], &[], 1024, "feed/0/1/0");
        let b = compose(vec![o], &[], 1024, "feed/0/1/0");
        assert_eq!(a, b);
    }
}
