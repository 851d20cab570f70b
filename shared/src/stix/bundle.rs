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

/// Bytes of `{"type":"bundle","id":"bundle--<uuid>","objects":[` and `]}`.
const BUNDLE_OVERHEAD: usize = 64;

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
pub fn compose(
    objects: Vec<StixObject>,
    support: &[StixObject],
    max_bytes: usize,
    seed: &str,
) -> Vec<Composed> {
    // Later copies of an id win: within a page, later means newer.
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut unique: Vec<Option<StixObject>> = Vec::with_capacity(objects.len());
    for object in objects {
        let id = super::object_id(&object).to_string();
        match position.get(&id) {
            Some(&i) => unique[i] = Some(object),
            None => {
                position.insert(id, unique.len());
                unique.push(Some(object));
            }
        }
    }
    let mut ordered: Vec<StixObject> = unique.into_iter().flatten().collect();
    ordered.sort_by_key(rank);

    let support: HashMap<&str, (Vec<u8>, &StixObject)> = support
        .iter()
        .map(|o| (super::object_id(o), (to_json(o), o)))
        .collect();

    let mut out = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut current_ids: HashSet<String> = HashSet::new();
    let mut needed: Vec<&str> = Vec::new();
    let mut size = BUNDLE_OVERHEAD;
    for object in &ordered {
        let json = to_json(object);
        let id = super::object_id(object).to_string();
        let new_support: Vec<&str> = refs_of(object)
            .filter(|r| support.contains_key(r) && !needed.contains(r) && !current_ids.contains(*r))
            .filter_map(|r| support.get_key_value(r).map(|(k, _)| *k))
            .collect();
        let extra: usize = new_support.iter().map(|r| support[r].0.len() + 1).sum();
        if !current.is_empty() && size + json.len() + 1 + extra > max_bytes {
            out.push(finish(
                &mut current,
                &mut needed,
                &support,
                &mut current_ids,
                seed,
                out.len(),
                max_bytes,
            ));
            size = BUNDLE_OVERHEAD;
            // Support objects must be recomputed for the fresh bundle.
            let fresh: Vec<&str> = refs_of(object)
                .filter_map(|r| support.get_key_value(r).map(|(k, _)| *k))
                .collect();
            size += fresh.iter().map(|r| support[r].0.len() + 1).sum::<usize>();
            needed.extend(fresh);
        } else {
            size += extra;
            needed.extend(new_support);
        }
        size += json.len() + 1;
        current.push(json);
        current_ids.insert(id);
    }
    if !current.is_empty() {
        out.push(finish(
            &mut current,
            &mut needed,
            &support,
            &mut current_ids,
            seed,
            out.len(),
            max_bytes,
        ));
    }
    out
}

fn finish(
    current: &mut Vec<Vec<u8>>,
    needed: &mut Vec<&str>,
    support: &HashMap<&str, (Vec<u8>, &StixObject)>,
    ids: &mut HashSet<String>,
    seed: &str,
    index: usize,
    max_bytes: usize,
) -> Composed {
    let bundle_id = uuid::Uuid::new_v5(
        &super::ids::NAMESPACE,
        format!("feedstix-bundle/{seed}/{index}").as_bytes(),
    );
    let mut json = Vec::with_capacity(max_bytes.min(1 << 20));
    json.extend_from_slice(
        format!(r#"{{"type":"bundle","id":"bundle--{bundle_id}","objects":["#).as_bytes(),
    );
    let mut count = 0;
    let mut first = true;
    for part in needed
        .iter()
        .filter(|r| !ids.contains(**r))
        .map(|r| &support[r].0)
        .chain(current.iter())
    {
        if !first {
            json.push(b',');
        }
        first = false;
        json.extend_from_slice(part);
        count += 1;
    }
    json.extend_from_slice(b"]}");
    let oversize = json.len() > max_bytes;
    current.clear();
    needed.clear();
    ids.clear();
    Composed {
        json,
        objects: count,
        oversize,
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
