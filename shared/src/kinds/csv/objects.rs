//! Turning one CSV row into STIX objects, following the mapper's representations.
//!
//! Entities are built first (each representation may give several when its identifying
//! cell holds a list), then relationships join what the row produced. Ids are
//! deterministic, so the same row always gives the same objects. A value that cannot be
//! read (a date that does not parse, an address that is not one) rejects the row with a
//! reason; an absent optional value is simply left out.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use csv::ByteRecord;
use serde_json::{json, Map, Value};

use super::dates;
use super::mapper::{AttrSpec, EntityKind, Key, Mapper, RepKind, Representation};
use crate::stix::ids;
use crate::stix::object::{timestamp, value_observable, vulnerability};
use crate::stix::{Provenance, StixObject};

/// The cells of one record, reached through the mapper's column slots.
pub(crate) struct Cells<'r> {
    pub(crate) record: &'r ByteRecord,
    /// Field index of each mapper column slot in this file.
    pub(crate) fields: &'r [usize],
}

/// One cell as the mapper sees it.
pub(crate) enum Cell<'r> {
    Text(Cow<'r, str>),
    Empty,
    /// The row ends before this column.
    Missing(usize),
    NotUtf8,
}

impl<'r> Cells<'r> {
    pub(crate) fn get(&self, slot: usize) -> Cell<'r> {
        let Some(&index) = self.fields.get(slot) else {
            return Cell::Missing(self.record.len());
        };
        let Some(raw) = self.record.get(index) else {
            return Cell::Missing(self.record.len());
        };
        let raw = raw.trim_ascii();
        // Some feeds write `"a", "b"`: the space makes the quotes literal to a CSV parser.
        let (raw, doubled) = match raw {
            [b'"', inner @ .., b'"'] => (inner.trim_ascii(), true),
            _ => (raw, false),
        };
        if raw.is_empty() {
            return Cell::Empty;
        }
        match std::str::from_utf8(raw) {
            Ok(s) if doubled && s.contains("\"\"") => {
                Cell::Text(Cow::Owned(s.replace("\"\"", "\"")))
            }
            Ok(s) => Cell::Text(Cow::Borrowed(s)),
            Err(_) => Cell::NotUtf8,
        }
    }
}

/// Builds the objects of one row. Holds what is the same for every row.
pub(crate) struct RowBuilder {
    mapper: Mapper,
    provenance: Provenance,
    /// The feed author's id, computed once: it is a hash, and every SDO carries it.
    author_id: Option<String>,
    /// `object_marking_refs`, built once for the same reason.
    markings: Option<Value>,
    now: DateTime<Utc>,
    /// Ids produced by each representation for the current row; reused across rows.
    produced: Vec<Vec<String>>,
    /// Whether each representation applies to the current row; reused across rows.
    applies: Vec<bool>,
}

/// Why a row gave no objects, or which value in it is wrong.
pub(crate) type SkipReason = String;

impl RowBuilder {
    pub(crate) fn new(mapper: &Mapper, provenance: &Provenance, now: DateTime<Utc>) -> Self {
        RowBuilder {
            mapper: mapper.clone(),
            provenance: provenance.clone(),
            author_id: provenance.author_id(),
            markings: (!provenance.markings.is_empty()).then(|| {
                Value::Array(
                    provenance
                        .markings
                        .iter()
                        .map(|m| Value::String(m.id().into()))
                        .collect(),
                )
            }),
            now,
            produced: vec![Vec::new(); mapper.representations.len()],
            applies: Vec::with_capacity(mapper.representations.len()),
        }
    }

    /// Appends the row's objects to `out`. Returns the row's date (its first mapped
    /// `valid_from`, `first_seen` or `start_time`), used for `import_from`.
    pub(crate) fn build(
        &mut self,
        cells: &Cells<'_>,
        out: &mut Vec<StixObject>,
    ) -> Result<Option<DateTime<Utc>>, SkipReason> {
        for p in &mut self.produced {
            p.clear();
        }
        let start = out.len();
        let row = Row {
            cells,
            mapper: &self.mapper,
        };
        self.applies.clear();
        self.applies
            .extend(self.mapper.representations.iter().map(|r| row.applies(r)));
        let applies = &self.applies;
        let mut row_date = None;
        'outer: for (rep, _) in self
            .mapper
            .representations
            .iter()
            .zip(applies.iter())
            .filter(|(_, a)| **a)
        {
            for attr in &rep.attrs {
                if matches!(attr.key, Key::ValidFrom | Key::FirstSeen | Key::StartTime) {
                    if let Some(d) = row.date(attr)? {
                        row_date = Some(d);
                        break 'outer;
                    }
                }
            }
        }
        let at = row_date.unwrap_or(self.now);
        // Formatted once per row: most objects of a row share this timestamp.
        let at_ts = timestamp(at);

        let mut absent: Option<String> = None;
        for (i, rep) in self.mapper.representations.iter().enumerate() {
            if !applies[i] {
                continue;
            }
            match &rep.kind {
                RepKind::Entity(kind) => {
                    let ctx = Ctx {
                        row: &row,
                        rep,
                        at,
                        provenance: &self.provenance,
                        markings: self.markings.as_ref(),
                        at_ts: &at_ts,
                        author: self.created_by(&row, rep),
                    };
                    let before = out.len();
                    ctx.entity(*kind, out, &mut absent)
                        .map_err(|e| format!("{e} (representation `{}`)", rep.id))?;
                    self.produced[i].extend(
                        out[before..]
                            .iter()
                            .map(|o| crate::stix::object_id(o).to_string()),
                    );
                }
                RepKind::Relationship(rel_type) => {
                    let ends = |key: Key| -> Vec<&String> {
                        rep.attr(key)
                            .map(|a| a.based_on.iter().flat_map(|&j| &self.produced[j]).collect())
                            .unwrap_or_default()
                    };
                    let (from, to) = (ends(Key::From), ends(Key::To));
                    let description = match rep.attr(Key::Description) {
                        Some(a) => row.text(a, &mut absent)?,
                        None => None,
                    };
                    for source in &from {
                        for target in &to {
                            if source == target {
                                continue;
                            }
                            let mut r = relationship_object(
                                rel_type,
                                source,
                                target,
                                &at_ts,
                                self.author_id.as_deref(),
                                self.markings.as_ref(),
                            );
                            if let Some(d) = &description {
                                r.insert("description".into(), Value::String(d.to_string()));
                            }
                            out.push(r);
                        }
                    }
                }
            }
        }
        if out.len() == start {
            return Err(absent.unwrap_or_else(|| "no representation applies to this row".into()));
        }
        Ok(row_date)
    }

    /// The column as the mapper names it, for messages.
    pub(crate) fn column_label(&self, slot: usize) -> String {
        self.mapper.columns[slot].label()
    }

    /// The author of an entity: an identity the row itself produced (`createdBy` based on
    /// another representation), else the feed's author.
    fn created_by(&self, _row: &Row<'_, '_>, rep: &Representation) -> Option<String> {
        rep.attr(Key::CreatedBy)
            .and_then(|a| {
                a.based_on
                    .iter()
                    .find_map(|&j| self.produced[j].first().cloned())
            })
            .or_else(|| self.author_id.clone())
    }
}

struct Row<'c, 'r> {
    cells: &'c Cells<'r>,
    mapper: &'c Mapper,
}

impl<'r> Row<'_, 'r> {
    fn applies(&self, rep: &Representation) -> bool {
        let Some(cond) = &rep.condition else {
            return true;
        };
        let same = match self.cells.get(cond.slot) {
            Cell::Text(t) => t.eq_ignore_ascii_case(&cond.value),
            Cell::Empty | Cell::Missing(_) => cond.value.is_empty(),
            Cell::NotUtf8 => false,
        };
        same == cond.equals
    }

    fn column(&self, slot: usize) -> String {
        self.mapper.columns[slot].label()
    }

    /// The attribute's value: its cell, else its first default. When there is none, the
    /// first such absence is described in `absent` (for the row's skip reason).
    fn text(
        &self,
        attr: &'r AttrSpec,
        absent: &mut Option<String>,
    ) -> Result<Option<Cow<'r, str>>, SkipReason> {
        if let Some(slot) = attr.slot {
            match self.cells.get(slot) {
                Cell::Text(t) => return Ok(Some(t)),
                Cell::NotUtf8 => {
                    return Err(format!("column {} is not valid utf-8", self.column(slot)))
                }
                Cell::Empty => {
                    if attr.defaults.is_empty() && absent.is_none() {
                        *absent = Some(format!("column {} is empty", self.column(slot)));
                    }
                }
                Cell::Missing(fields) => {
                    if attr.defaults.is_empty() && absent.is_none() {
                        *absent = Some(format!(
                            "column {} is past the end of the row ({fields} fields)",
                            self.column(slot)
                        ));
                    }
                }
            }
        }
        Ok(attr.defaults.first().map(|d| Cow::Borrowed(d.as_str())))
    }

    /// The attribute's values, the cell split by the attribute's separator when it has one.
    fn list(
        &self,
        attr: &'r AttrSpec,
        absent: &mut Option<String>,
    ) -> Result<Vec<String>, SkipReason> {
        let Some(text) = self.text(attr, absent)? else {
            return Ok(Vec::new());
        };
        let values = match &attr.split {
            Some(sep) => text
                .split(sep.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => vec![text.trim().to_string()],
        };
        Ok(values)
    }

    fn date(&self, attr: &'r AttrSpec) -> Result<Option<DateTime<Utc>>, SkipReason> {
        let mut ignored = None;
        let Some(text) = self.text(attr, &mut ignored)? else {
            return Ok(None);
        };
        let parsed = match &attr.date {
            Some(p) => dates::parse_with(p, &text, attr.offset),
            None => dates::guess(&text, attr.offset),
        };
        match (parsed, &attr.date) {
            (Some(d), _) => Ok(Some(d)),
            (None, Some(p)) => Err(format!(
                "`{text}` does not match date pattern `{}`{}",
                p.source,
                self.where_(attr)
            )),
            (None, None) => Err(format!("`{text}` is not a date{}", self.where_(attr))),
        }
    }

    fn where_(&self, attr: &AttrSpec) -> String {
        attr.slot
            .map(|s| format!(" (column {})", self.column(s)))
            .unwrap_or_default()
    }
}

/// Everything an entity builder needs for one representation of one row.
struct Ctx<'a, 'c, 'r> {
    row: &'a Row<'c, 'r>,
    rep: &'r Representation,
    at: DateTime<Utc>,
    provenance: &'a Provenance,
    markings: Option<&'a Value>,
    at_ts: &'a str,
    author: Option<String>,
}

impl<'r> Ctx<'_, '_, 'r> {
    fn one(&self, key: Key) -> Result<Option<Cow<'r, str>>, SkipReason> {
        match self.rep.attr(key) {
            Some(a) => self.row.text(a, &mut None),
            None => Ok(None),
        }
    }

    fn many(&self, key: Key) -> Result<Vec<String>, SkipReason> {
        match self.rep.attr(key) {
            Some(a) => self.row.list(a, &mut None),
            None => Ok(Vec::new()),
        }
    }

    fn identifying(
        &self,
        key: Key,
        absent: &mut Option<String>,
    ) -> Result<Vec<String>, SkipReason> {
        match self.rep.attr(key) {
            Some(a) => self.row.list(a, absent),
            None => Ok(Vec::new()),
        }
    }

    fn date(&self, key: Key) -> Result<Option<DateTime<Utc>>, SkipReason> {
        match self.rep.attr(key) {
            Some(a) => self.row.date(a),
            None => Ok(None),
        }
    }

    fn number(&self, key: Key, name: &str) -> Result<Option<i64>, SkipReason> {
        match self.one(key)? {
            Some(t) => match t.trim().parse::<f64>() {
                Ok(n) if (0.0..=100.0).contains(&n) => Ok(Some(n.round() as i64)),
                _ => Err(format!("`{t}` is not a number from 0 to 100 ({name})")),
            },
            None => Ok(None),
        }
    }

    /// Common SDO properties: description, labels, confidence, author, markings.
    fn sdo(
        &self,
        stix_type: &str,
        id: String,
        name: Option<&str>,
    ) -> Result<StixObject, SkipReason> {
        let ts = self.at_ts.to_string();
        let mut o = Map::new();
        o.insert("type".into(), Value::String(stix_type.into()));
        o.insert("spec_version".into(), Value::String("2.1".into()));
        o.insert("id".into(), Value::String(id));
        o.insert("created".into(), Value::String(ts.clone()));
        o.insert("modified".into(), Value::String(ts));
        if let Some(n) = name {
            o.insert("name".into(), Value::String(n.into()));
        }
        if let Some(d) = self.one(Key::Description)? {
            o.insert("description".into(), Value::String(d.into_owned()));
        }
        let labels = self.many(Key::Labels)?;
        if !labels.is_empty() {
            o.insert("labels".into(), strings(labels));
        }
        if let Some(c) = self.number(Key::Confidence, "confidence")? {
            o.insert("confidence".into(), json!(c));
        }
        if let Some(m) = self.markings {
            o.insert("object_marking_refs".into(), m.clone());
        }
        if let Some(a) = &self.author {
            o.insert("created_by_ref".into(), Value::String(a.clone()));
        }
        Ok(o)
    }

    fn entity(
        &self,
        kind: EntityKind,
        out: &mut Vec<StixObject>,
        absent: &mut Option<String>,
    ) -> Result<(), SkipReason> {
        match kind {
            EntityKind::Indicator => self.indicators(out, absent),
            EntityKind::Observable(stix_type) => {
                for value in self.identifying(Key::Value, absent)? {
                    if stix_type == "url" && !is_uri(&value) {
                        // The indicator built from the same cell is still valid; only the
                        // observable would fail STIX validation, so only it is left out.
                        tracing::debug!(value = %value, "url observable left out: not a valid uri");
                        absent.get_or_insert_with(|| format!("`{value}` is not a valid uri"));
                        continue;
                    }
                    check_value(stix_type, &value)?;
                    let mut o = value_observable(stix_type, &value, self.provenance);
                    if let Some(d) = self.one(Key::Description)? {
                        o.insert(
                            "x_opencti_description".into(),
                            Value::String(d.into_owned()),
                        );
                    }
                    if let Some(s) = self.number(Key::Score, "x_opencti_score")? {
                        o.insert("x_opencti_score".into(), json!(s));
                    }
                    let labels = self.many(Key::Labels)?;
                    if !labels.is_empty() {
                        o.insert("x_opencti_labels".into(), strings(labels));
                    }
                    out.push(o);
                }
                Ok(())
            }
            EntityKind::File => self.file(out, absent),
            EntityKind::Vulnerability => {
                for name in self.identifying(Key::Name, absent)? {
                    let mut o = vulnerability(&name, self.provenance, self.at);
                    let extra = self.sdo("vulnerability", String::new(), None)?;
                    merge_optional(&mut o, extra);
                    out.push(o);
                }
                Ok(())
            }
            EntityKind::Named(stix_type) => {
                for name in self.identifying(Key::Name, absent)? {
                    let id = ids::named_sdo_id(stix_type, &name);
                    let mut o = self.sdo(stix_type, id, Some(&name))?;
                    self.named_extras(stix_type, &mut o)?;
                    out.push(o);
                }
                Ok(())
            }
            EntityKind::ThreatActorGroup => {
                for name in self.identifying(Key::Name, absent)? {
                    // OpenCTI keys threat actors on their OpenCTI type as well as the name.
                    let id = ids::deterministic_id(
                        "threat-actor",
                        &json!({"name": ids::normalize_name(&name), "opencti_type": "Threat-Actor-Group"}),
                    );
                    let mut o = self.sdo("threat-actor", id, Some(&name))?;
                    let types = self.many(Key::Types)?;
                    if !types.is_empty() {
                        o.insert("threat_actor_types".into(), strings(types));
                    }
                    self.seen(&mut o)?;
                    out.push(o);
                }
                Ok(())
            }
            EntityKind::Identity(class) => {
                let class = match class {
                    Some(c) => c.to_string(),
                    None => self
                        .one(Key::IdentityClass)?
                        .map(|c| c.to_lowercase())
                        .unwrap_or_else(|| "organization".into()),
                };
                for name in self.identifying(Key::Name, absent)? {
                    let id = ids::identity_id(&name, &class);
                    let mut o = self.sdo("identity", id, Some(name.trim()))?;
                    o.insert("identity_class".into(), Value::String(class.clone()));
                    out.push(o);
                }
                Ok(())
            }
        }
    }

    fn named_extras(&self, stix_type: &str, o: &mut StixObject) -> Result<(), SkipReason> {
        let aliases = self.many(Key::Aliases)?;
        if !aliases.is_empty() {
            o.insert("aliases".into(), strings(aliases));
        }
        match stix_type {
            "malware" => {
                let is_family = match self.one(Key::IsFamily)? {
                    Some(t) => parse_bool(&t)
                        .ok_or_else(|| format!("`{t}` is not a boolean (is_family)"))?,
                    // A feed naming a malware names its family, not one sample.
                    None => true,
                };
                o.insert("is_family".into(), Value::Bool(is_family));
                let types = self.many(Key::Types)?;
                if !types.is_empty() {
                    o.insert("malware_types".into(), strings(types));
                }
                self.seen(o)?;
            }
            "tool" => {
                let types = self.many(Key::Types)?;
                if !types.is_empty() {
                    o.insert("tool_types".into(), strings(types));
                }
            }
            _ => self.seen(o)?,
        }
        Ok(())
    }

    /// `first_seen` and `last_seen`, the latter dropped when it precedes the former
    /// (STIX forbids it).
    fn seen(&self, o: &mut StixObject) -> Result<(), SkipReason> {
        let first = self.date(Key::FirstSeen)?;
        let last = self.date(Key::LastSeen)?;
        if let Some(f) = first {
            o.insert("first_seen".into(), Value::String(timestamp(f)));
        }
        if let Some(l) = last.filter(|l| first.is_none_or(|f| *l >= f)) {
            o.insert("last_seen".into(), Value::String(timestamp(l)));
        }
        Ok(())
    }

    fn file(
        &self,
        out: &mut Vec<StixObject>,
        absent: &mut Option<String>,
    ) -> Result<(), SkipReason> {
        let mut hashes = Map::new();
        for attr in &self.rep.attrs {
            if let Key::Hash(algo) = attr.key {
                if let Some(h) = self.row.text(attr, absent)? {
                    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(format!("`{h}` is not a hexadecimal {algo} hash"));
                    }
                    hashes.insert(algo.into(), Value::String(h.to_ascii_lowercase()));
                }
            }
        }
        let name = match self.rep.attr(Key::Name) {
            Some(a) => self.row.text(a, absent)?,
            None => None,
        };
        let Some(id) = ids::file_id(&hashes, name.as_deref()) else {
            return Ok(());
        };
        let mut o = Map::new();
        o.insert("type".into(), Value::String("file".into()));
        o.insert("spec_version".into(), Value::String("2.1".into()));
        o.insert("id".into(), Value::String(id));
        if !hashes.is_empty() {
            o.insert("hashes".into(), Value::Object(hashes));
        }
        if let Some(n) = name {
            o.insert("name".into(), Value::String(n.into_owned()));
        }
        if !self.provenance.markings.is_empty() {
            let refs = self
                .provenance
                .markings
                .iter()
                .map(|m| Value::String(m.id().into()))
                .collect();
            o.insert("object_marking_refs".into(), Value::Array(refs));
        }
        out.push(o);
        Ok(())
    }

    fn indicators(
        &self,
        out: &mut Vec<StixObject>,
        absent: &mut Option<String>,
    ) -> Result<(), SkipReason> {
        let pattern_type = self
            .one(Key::PatternType)?
            .map(|t| t.trim().to_lowercase())
            .unwrap_or_else(|| "stix".into());
        let main_type = self.one(Key::MainObservableType)?;
        let mut raws = self.identifying(Key::Pattern, absent)?;
        let from_name = raws.is_empty();
        if from_name {
            // OpenCTI builds an indicator from its name when given the observable type.
            if main_type.is_none() && self.rep.attr(Key::Pattern).is_some() {
                return Ok(());
            }
            raws = self.identifying(Key::Name, absent)?;
        }
        let name_attr = if from_name {
            None
        } else {
            self.one(Key::Name)?
        };
        let valid_from = self.date(Key::ValidFrom)?.unwrap_or(self.at);
        let valid_until = self.date(Key::ValidUntil)?.filter(|u| *u > valid_from);
        for raw in raws {
            let (pattern, bare) = if pattern_type == "stix" && !raw.trim_start().starts_with('[') {
                (stix_pattern(main_type.as_deref(), &raw)?, true)
            } else {
                (raw.clone(), false)
            };
            let name = match &name_attr {
                Some(n) => n.to_string(),
                None if bare => raw.clone(),
                None => pattern.clone(),
            };
            let id = ids::indicator_id(&pattern);
            let mut o = self.sdo("indicator", id, Some(&name))?;
            o.insert("pattern".into(), Value::String(pattern));
            o.insert("pattern_type".into(), Value::String(pattern_type.clone()));
            if let Some(v) = self.one(Key::PatternVersion)? {
                o.insert("pattern_version".into(), Value::String(v.into_owned()));
            }
            let valid_from_ts = if valid_from == self.at {
                self.at_ts.to_string()
            } else {
                timestamp(valid_from)
            };
            o.insert("valid_from".into(), Value::String(valid_from_ts));
            if let Some(u) = valid_until {
                o.insert("valid_until".into(), Value::String(timestamp(u)));
            }
            let types = self.many(Key::Types)?;
            if !types.is_empty() {
                o.insert("indicator_types".into(), strings(types));
            }
            if let Some(s) = self.number(Key::Score, "x_opencti_score")? {
                o.insert("x_opencti_score".into(), json!(s));
            }
            if let Some(t) = &main_type {
                o.insert(
                    "x_opencti_main_observable_type".into(),
                    Value::String(t.to_string()),
                );
            }
            out.push(o);
        }
        Ok(())
    }
}

/// A relationship, as [`crate::stix::object::relationship`] makes it, with the author and
/// markings computed once per feed rather than once per object.
fn relationship_object(
    relationship_type: &str,
    source: &str,
    target: &str,
    at_ts: &str,
    author: Option<&str>,
    markings: Option<&Value>,
) -> StixObject {
    let mut o = Map::new();
    o.insert("type".into(), Value::String("relationship".into()));
    o.insert("spec_version".into(), Value::String("2.1".into()));
    let id = ids::relationship_id(relationship_type, source, target, None, None);
    o.insert("id".into(), Value::String(id));
    o.insert("created".into(), Value::String(at_ts.into()));
    o.insert("modified".into(), Value::String(at_ts.into()));
    o.insert(
        "relationship_type".into(),
        Value::String(relationship_type.into()),
    );
    o.insert("source_ref".into(), Value::String(source.into()));
    o.insert("target_ref".into(), Value::String(target.into()));
    if let Some(a) = author {
        o.insert("created_by_ref".into(), Value::String(a.into()));
    }
    if let Some(m) = markings {
        o.insert("object_marking_refs".into(), m.clone());
    }
    o
}

/// Copies the optional properties an [`Ctx::sdo`] computed onto an object built elsewhere.
fn merge_optional(target: &mut StixObject, extra: StixObject) {
    for (k, v) in extra {
        if matches!(
            k.as_str(),
            "description" | "labels" | "confidence" | "created_by_ref"
        ) {
            target.insert(k, v);
        }
    }
}

fn strings(values: Vec<String>) -> Value {
    Value::Array(values.into_iter().map(Value::String).collect())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Some(true),
        "false" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Refuses values a validator would refuse for the observable's type.
fn check_value(stix_type: &str, value: &str) -> Result<(), SkipReason> {
    let ok = match stix_type {
        "ipv4-addr" => is_ip_or_cidr::<Ipv4Addr>(value, 32),
        "ipv6-addr" => is_ip_or_cidr::<Ipv6Addr>(value, 128),
        "domain-name" | "email-addr" | "mac-addr" => !value.contains(char::is_whitespace),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{value}` is not a valid {stix_type} value"))
    }
}

/// Whether a URL is a URI as STIX validators check it: a scheme, then only ASCII
/// characters that RFC 3986 allows (percent-escapes included).
fn is_uri(value: &str) -> bool {
    let Some((scheme, _)) = value.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    scheme_ok
        && value.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'\\' | b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}'
                )
        })
}

fn is_ip_or_cidr<T: std::str::FromStr>(value: &str, max_prefix: u8) -> bool {
    match value.split_once('/') {
        Some((addr, prefix)) => {
            addr.parse::<T>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= max_prefix)
        }
        None => value.parse::<T>().is_ok(),
    }
}

/// The STIX pattern for a bare value, e.g. `[ipv4-addr:value = '192.0.2.1']`.
///
/// The observable type comes from `x_opencti_main_observable_type` when the mapper gives
/// it (OpenCTI or STIX spelling), else from the value's shape.
pub(crate) fn stix_pattern(main_type: Option<&str>, value: &str) -> Result<String, SkipReason> {
    let value = value.trim();
    let path: Cow<'static, str> = match main_type.map(|t| t.trim().to_ascii_lowercase()) {
        Some(t) => match t.as_str() {
            "ipv4-addr" => "ipv4-addr:value".into(),
            "ipv6-addr" => "ipv6-addr:value".into(),
            "domain-name" | "hostname" => "domain-name:value".into(),
            "url" => "url:value".into(),
            "email-addr" => "email-addr:value".into(),
            "mac-addr" => "mac-addr:value".into(),
            "stixfile" | "file" | "artifact" => file_path(value).into(),
            other => {
                return Err(format!(
                    "main observable type `{other}` cannot make a pattern from `{value}`"
                ))
            }
        },
        None => guess_path(value)
            .ok_or_else(|| {
                format!(
                    "cannot tell which observable `{value}` is; set x_opencti_main_observable_type"
                )
            })?
            .into(),
    };
    Ok(format!("[{path} = '{}']", escape_pattern(value)))
}

fn file_path(value: &str) -> String {
    let algo = if value.bytes().all(|b| b.is_ascii_hexdigit()) {
        match value.len() {
            32 => Some("MD5"),
            40 => Some("SHA-1"),
            64 => Some("SHA-256"),
            128 => Some("SHA-512"),
            _ => None,
        }
    } else {
        None
    };
    match algo {
        Some(a) => format!("file:hashes.'{a}'"),
        None => "file:name".into(),
    }
}

fn guess_path(value: &str) -> Option<String> {
    if is_ip_or_cidr::<Ipv4Addr>(value, 32) {
        return Some("ipv4-addr:value".into());
    }
    if is_ip_or_cidr::<Ipv6Addr>(value, 128) {
        return Some("ipv6-addr:value".into());
    }
    if value.contains("://") {
        return Some("url:value".into());
    }
    if value.contains('@') && !value.contains(char::is_whitespace) {
        return Some("email-addr:value".into());
    }
    let path = file_path(value);
    if path != "file:name" {
        return Some(path);
    }
    if value.contains('.') && !value.contains(char::is_whitespace) && !value.contains('/') {
        return Some("domain-name:value".into());
    }
    None
}

/// Escapes a string literal for a STIX pattern: backslash and single quote.
pub(crate) fn escape_pattern(value: &str) -> Cow<'_, str> {
    if value.contains(['\\', '\'']) {
        Cow::Owned(value.replace('\\', "\\\\").replace('\'', "\\'"))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_from_bare_values() {
        assert_eq!(
            stix_pattern(Some("IPv4-Addr"), "192.0.2.1").unwrap(),
            "[ipv4-addr:value = '192.0.2.1']"
        );
        assert_eq!(
            stix_pattern(None, "http://a.example.test/x'y\\z").unwrap(),
            r"[url:value = 'http://a.example.test/x\'y\\z']"
        );
        assert_eq!(
            stix_pattern(None, "2001:db8::/32").unwrap(),
            "[ipv6-addr:value = '2001:db8::/32']"
        );
        assert_eq!(
            stix_pattern(Some("StixFile"), &"a".repeat(64)).unwrap(),
            format!("[file:hashes.'SHA-256' = '{}']", "a".repeat(64))
        );
        assert_eq!(
            stix_pattern(None, "bad.example.test").unwrap(),
            "[domain-name:value = 'bad.example.test']"
        );
        assert!(stix_pattern(None, "just words").is_err());
        assert!(stix_pattern(Some("Credential"), "x").is_err());
    }

    #[test]
    fn relationship_object_matches_the_shared_builder() {
        let p = Provenance {
            author: Some("x".into()),
            markings: vec![crate::stix::Tlp::Green],
        };
        let at = chrono::Utc::now();
        let shared = crate::stix::object::relationship("uses", "a--1", "b--2", &p, at);
        let markings = Value::Array(vec![Value::String(crate::stix::Tlp::Green.id().into())]);
        let ours = relationship_object(
            "uses",
            "a--1",
            "b--2",
            &timestamp(at),
            p.author_id().as_deref(),
            Some(&markings),
        );
        assert_eq!(ours, shared);
    }

    #[test]
    fn observable_values_are_checked() {
        assert!(check_value("ipv4-addr", "192.0.2.0/24").is_ok());
        assert!(check_value("ipv4-addr", "192.0.2.300").is_err());
        assert!(check_value("ipv4-addr", "192.0.2.0/33").is_err());
        assert!(check_value("ipv6-addr", "2a06:e480::/29").is_ok());
        assert!(check_value("domain-name", "a b").is_err());
        assert!(is_uri("http://a.example.test/x?y=1&z=%20"));
        assert!(!is_uri(r"http://a.example.test/a\b"));
        assert!(!is_uri("a.example.test/x"));
        assert!(!is_uri("http://a.example.test/a b"));
    }
}
