//! OpenCTI CSV mappers: the JSON shapes OpenCTI exports, read and checked once.
//!
//! Three envelopes are accepted, as OpenCTI writes them: the bare mapper (`representations`
//! as an array, or as the JSON string the platform stores), the mapper export
//! (`{"openCTI_version", "type": "csvMapper", "configuration": {…}}`), and a CSV feed export
//! (`"type": "csvFeeds"`) carrying the mapper inline under `csv_mapper`. Everything a row
//! needs is resolved here (entity kinds, attribute keys, date patterns, relationship ends),
//! so mapping a row does no lookups by name.
//!
//! Columns: a `column_name` of one to three capital letters is a spreadsheet letter, as in
//! OpenCTI (`A` is the first column, `AA` the 27th). Anything else is a header name, matched
//! case-insensitively once the header is read; `a|b` lists alternative names, which lets one
//! mapper read two layouts of the same feed. That second form is a feedstix extension.

use chrono::FixedOffset;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::dates::{self, DatePattern};

/// Why a mapper could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MapperError {
    /// The text is not JSON.
    #[error("csv mapper is not valid json: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but none of the shapes OpenCTI exports.
    #[error("not an opencti csv mapper: {0}")]
    Shape(String),
    /// A representation targets an entity type feedstix cannot build.
    #[error(
        "representation `{representation}`: entity type `{entity_type}` is not supported \
         (supported: {supported})"
    )]
    UnsupportedEntity {
        /// The representation's id.
        representation: String,
        /// The OpenCTI type it names.
        entity_type: String,
        /// The supported OpenCTI types, comma-separated.
        supported: String,
    },
    /// A relationship representation names a type feedstix does not know.
    #[error(
        "representation `{representation}`: relationship type `{relationship_type}` is not \
         supported (supported: {supported})"
    )]
    UnsupportedRelationship {
        /// The representation's id.
        representation: String,
        /// The relationship type it names.
        relationship_type: String,
        /// The supported relationship types, comma-separated.
        supported: String,
    },
    /// One attribute is unusable (bad column, separator, date pattern, reference…).
    #[error("representation `{representation}`, attribute `{attribute}`: {reason}")]
    Attribute {
        /// The representation's id.
        representation: String,
        /// The attribute's key.
        attribute: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The mapper as a whole is unusable.
    #[error("csv mapper `{mapper}`: {reason}")]
    Invalid {
        /// The mapper's name.
        mapper: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What kind of STIX object a representation builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntityKind {
    /// `indicator`.
    Indicator,
    /// An SCO identified by its `value`; the STIX type is given.
    Observable(&'static str),
    /// `file`, identified by a hash or its name.
    File,
    /// An SDO identified by its name: `malware`, `intrusion-set`, `campaign`, `tool`.
    Named(&'static str),
    /// `vulnerability`.
    Vulnerability,
    /// `threat-actor` as OpenCTI's Threat-Actor-Group.
    ThreatActorGroup,
    /// `identity` with the given class (`None`: from an attribute, else organization).
    Identity(Option<&'static str>),
}

/// OpenCTI entity types feedstix maps, and what each becomes.
///
/// Hostname has no STIX 2.1 object; it becomes `domain-name`, the closest standard SCO,
/// so the output stays valid STIX.
const ENTITY_TYPES: [(&str, EntityKind); 20] = [
    ("Indicator", EntityKind::Indicator),
    ("Url", EntityKind::Observable("url")),
    ("IPv4-Addr", EntityKind::Observable("ipv4-addr")),
    ("IPv6-Addr", EntityKind::Observable("ipv6-addr")),
    ("Domain-Name", EntityKind::Observable("domain-name")),
    ("Hostname", EntityKind::Observable("domain-name")),
    ("Email-Addr", EntityKind::Observable("email-addr")),
    ("Mac-Addr", EntityKind::Observable("mac-addr")),
    ("StixFile", EntityKind::File),
    ("Malware", EntityKind::Named("malware")),
    ("Intrusion-Set", EntityKind::Named("intrusion-set")),
    ("Campaign", EntityKind::Named("campaign")),
    ("Tool", EntityKind::Named("tool")),
    ("Vulnerability", EntityKind::Vulnerability),
    ("Threat-Actor-Group", EntityKind::ThreatActorGroup),
    ("Threat-Actor", EntityKind::ThreatActorGroup),
    ("Organization", EntityKind::Identity(Some("organization"))),
    ("Individual", EntityKind::Identity(Some("individual"))),
    ("Sector", EntityKind::Identity(Some("class"))),
    ("Identity", EntityKind::Identity(None)),
];

/// STIX 2.1 relationship types a mapper may use between the supported entities.
const RELATIONSHIP_TYPES: [&str; 24] = [
    "based-on",
    "indicates",
    "related-to",
    "uses",
    "targets",
    "attributed-to",
    "located-at",
    "communicates-with",
    "resolves-to",
    "belongs-to",
    "variant-of",
    "derived-from",
    "duplicate-of",
    "delivers",
    "drops",
    "exploits",
    "hosts",
    "authored-by",
    "owns",
    "compromises",
    "originates-from",
    "impersonates",
    "consists-of",
    "downloads",
];

/// The OpenCTI entity types feedstix can build, for error messages and docs.
pub fn supported_entity_types() -> Vec<&'static str> {
    ENTITY_TYPES.iter().map(|(name, _)| *name).collect()
}

/// The attribute keys feedstix maps. Keys of any other name are ignored (logged at debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Value,
    Name,
    Description,
    Pattern,
    PatternType,
    PatternVersion,
    ValidFrom,
    ValidUntil,
    MainObservableType,
    Score,
    Confidence,
    Labels,
    Types,
    IsFamily,
    Aliases,
    FirstSeen,
    LastSeen,
    StartTime,
    StopTime,
    Hash(&'static str),
    IdentityClass,
    CreatedBy,
    From,
    To,
}

impl Key {
    fn parse(key: &str) -> Option<Key> {
        Some(match key {
            "value" => Key::Value,
            "name" => Key::Name,
            "description" | "x_opencti_description" => Key::Description,
            "pattern" => Key::Pattern,
            "pattern_type" => Key::PatternType,
            "pattern_version" => Key::PatternVersion,
            "valid_from" => Key::ValidFrom,
            "valid_until" => Key::ValidUntil,
            "x_opencti_main_observable_type" => Key::MainObservableType,
            "x_opencti_score" => Key::Score,
            "confidence" => Key::Confidence,
            "objectLabel" | "labels" => Key::Labels,
            "indicator_types" | "malware_types" | "threat_actor_types" | "tool_types" => Key::Types,
            "is_family" => Key::IsFamily,
            "aliases" | "x_opencti_aliases" => Key::Aliases,
            "first_seen" => Key::FirstSeen,
            "last_seen" => Key::LastSeen,
            "start_time" => Key::StartTime,
            "stop_time" => Key::StopTime,
            "MD5" | "hashes.MD5" | "hashes_MD5" => Key::Hash("MD5"),
            "SHA-1" | "hashes.SHA-1" | "hashes_SHA-1" | "SHA1" => Key::Hash("SHA-1"),
            "SHA-256" | "hashes.SHA-256" | "hashes_SHA-256" | "SHA256" => Key::Hash("SHA-256"),
            "SHA-512" | "hashes.SHA-512" | "hashes_SHA-512" | "SHA512" => Key::Hash("SHA-512"),
            "identity_class" => Key::IdentityClass,
            "createdBy" => Key::CreatedBy,
            "from" => Key::From,
            "to" => Key::To,
            _ => return None,
        })
    }
}

/// Where a mapper column points, before the header is known.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ColumnRef {
    /// A spreadsheet letter, as a zero-based index, with the letters as written.
    Letter(usize, String),
    /// Header names (lower-cased), any of which may match.
    Names(Vec<String>),
}

impl ColumnRef {
    fn parse(text: &str) -> Result<ColumnRef, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("column_name is empty".into());
        }
        if t.len() <= 3 && t.bytes().all(|b| b.is_ascii_uppercase()) {
            let index = t
                .bytes()
                .fold(0usize, |acc, b| acc * 26 + usize::from(b - b'A') + 1);
            return Ok(ColumnRef::Letter(index - 1, t.to_string()));
        }
        let names: Vec<String> = t
            .split('|')
            .map(|n| n.trim().to_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err(format!("column_name `{t}` names no column"));
        }
        Ok(ColumnRef::Names(names))
    }

    /// The column as a person would name it in a message.
    pub(crate) fn label(&self) -> String {
        match self {
            ColumnRef::Letter(_, letters) => letters.clone(),
            ColumnRef::Names(names) => names.join("|"),
        }
    }
}

/// One attribute of a representation, resolved.
#[derive(Debug, Clone)]
pub(crate) struct AttrSpec {
    pub(crate) key: Key,
    /// Index into [`Mapper::columns`], when the value comes from a column.
    pub(crate) slot: Option<usize>,
    /// Splits a cell into several values (labels `a,b,c`).
    pub(crate) split: Option<String>,
    pub(crate) date: Option<DatePattern>,
    pub(crate) offset: FixedOffset,
    /// Used when the cell is absent or empty.
    pub(crate) defaults: Vec<String>,
    /// Representation indices, for `from`, `to` and `createdBy`.
    pub(crate) based_on: Vec<usize>,
}

/// A condition on a cell that decides whether a representation applies to a row.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) slot: usize,
    pub(crate) equals: bool,
    pub(crate) value: String,
}

/// What a representation builds.
#[derive(Debug, Clone)]
pub(crate) enum RepKind {
    Entity(EntityKind),
    Relationship(String),
}

/// One representation, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Representation {
    pub(crate) id: String,
    pub(crate) kind: RepKind,
    pub(crate) attrs: Vec<AttrSpec>,
    pub(crate) condition: Option<Condition>,
}

impl Representation {
    /// The attribute with this key, if the mapper sets it.
    pub(crate) fn attr(&self, key: Key) -> Option<&AttrSpec> {
        self.attrs.iter().find(|a| a.key == key)
    }
}

/// A parsed and checked OpenCTI CSV mapper.
#[derive(Debug, Clone)]
pub struct Mapper {
    name: String,
    pub(crate) has_header: bool,
    pub(crate) separator: u8,
    pub(crate) skip_line_char: Option<u8>,
    /// Entities first, in mapper order, then relationships: a row's entities exist before
    /// the relationships that join them are built.
    pub(crate) representations: Vec<Representation>,
    /// Every distinct column the mapper reads; attributes refer to these by index.
    pub(crate) columns: Vec<ColumnRef>,
}

impl Mapper {
    /// Reads a mapper in any of the three shapes OpenCTI exports and checks it: every
    /// entity type is supported, every column, separator and date pattern is usable, and
    /// every relationship's `from` and `to` point at entity representations.
    ///
    /// # Errors
    ///
    /// [`MapperError`] naming the representation and attribute at fault.
    pub fn from_json(text: &str) -> Result<Mapper, MapperError> {
        let value: Value = serde_json::from_str(text)?;
        let (config, outer_name) = unwrap_envelope(value, None)?;
        let raw: RawMapper = serde_json::from_value(Value::Object(config))?;
        raw.build(outer_name)
    }

    /// The mapper's name, as exported (`csv mapper` when it has none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the first row (or the last commented line before the data) is a header.
    pub fn has_header(&self) -> bool {
        self.has_header
    }

    /// Whether some column is named by header text rather than by letter.
    pub(crate) fn uses_names(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c, ColumnRef::Names(_)))
    }
}

/// Peels the export envelopes off until the mapper configuration itself is reached.
fn unwrap_envelope(
    value: Value,
    outer_name: Option<String>,
) -> Result<(Map<String, Value>, Option<String>), MapperError> {
    let Value::Object(mut map) = value else {
        return Err(MapperError::Shape("expected a json object".into()));
    };
    let kind = map.get("type").and_then(Value::as_str).map(str::to_owned);
    match kind.as_deref() {
        Some("csvMapper") => match map.remove("configuration") {
            Some(config) => unwrap_envelope(config, outer_name),
            None => Err(MapperError::Shape(
                "a csvMapper export without `configuration`".into(),
            )),
        },
        Some("csvFeeds" | "csvFeed" | "ingestionCsv" | "IngestionCsv") => {
            let mut config = match map.remove("configuration") {
                Some(Value::Object(c)) => c,
                _ => map,
            };
            let feed_name = config
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match config.remove("csv_mapper") {
                Some(Value::String(inner)) => {
                    let inner: Value = serde_json::from_str(&inner)?;
                    unwrap_envelope(inner, feed_name)
                }
                Some(inner @ Value::Object(_)) => unwrap_envelope(inner, feed_name),
                _ => Err(MapperError::Shape(
                    "a csv feed export without an inline `csv_mapper` (a feed that points at a \
                     mapper by id needs that mapper exported separately)"
                        .into(),
                )),
            }
        }
        _ if map.contains_key("representations") => Ok((map, outer_name)),
        _ => Err(MapperError::Shape(
            "expected `representations`, a `csvMapper` export or a `csvFeeds` export".into(),
        )),
    }
}

#[derive(Deserialize)]
struct RawMapper {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    has_header: Option<bool>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default, rename = "skipLineChar", alias = "skip_line_char")]
    skip_line_char: Option<String>,
    representations: Value,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawRepresentation {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    target: RawTarget,
    #[serde(default)]
    attributes: Option<Vec<RawAttribute>>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawTarget {
    entity_type: String,
    #[serde(default)]
    column_based: Option<RawColumnBased>,
}

#[derive(Deserialize)]
struct RawColumnBased {
    #[serde(default)]
    column_reference: Option<String>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct RawAttribute {
    key: String,
    #[serde(default)]
    column: Option<RawColumn>,
    #[serde(default)]
    based_on: Option<RawBasedOn>,
    #[serde(default)]
    default_values: Option<Vec<Value>>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawColumn {
    #[serde(default)]
    column_name: Option<String>,
    #[serde(default)]
    configuration: Option<RawColumnConfig>,
}

#[derive(Deserialize)]
struct RawColumnConfig {
    // Early OpenCTI versions spelt it `seperator`.
    #[serde(default, alias = "seperator")]
    separator: Option<String>,
    #[serde(default)]
    pattern_date: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Deserialize)]
struct RawBasedOn {
    #[serde(default)]
    representations: Option<Vec<Option<String>>>,
}

/// Keys OpenCTI writes next to a mapper that carry nothing for parsing.
const QUIET_KEYS: [&str; 10] = [
    "id",
    "standard_id",
    "entity_type",
    "internal_id",
    "has_entity_dynamic_mapping",
    "user_chosen_markings",
    "created_at",
    "updated_at",
    "errors",
    "parent_types",
];

impl RawMapper {
    fn build(self, outer_name: Option<String>) -> Result<Mapper, MapperError> {
        let name = self
            .name
            .filter(|n| !n.trim().is_empty())
            .or(outer_name)
            .unwrap_or_else(|| "csv mapper".into());
        for key in self.extra.keys() {
            if !QUIET_KEYS.contains(&key.as_str()) {
                tracing::debug!(mapper = %name, key = %key, "ignoring unknown csv mapper key");
            }
        }
        let invalid = |reason: String| MapperError::Invalid {
            mapper: name.clone(),
            reason,
        };
        let separator = match self.separator.as_deref() {
            None | Some("") => b',',
            Some("\t" | "\\t" | "tab" | "TAB") => b'\t',
            Some(s) if s.len() == 1 => s.as_bytes()[0],
            Some(s) => {
                return Err(invalid(format!(
                    "separator `{s}` is not a single character"
                )))
            }
        };
        let skip_line_char = match self.skip_line_char.as_deref() {
            None | Some("") => None,
            Some(s) if s.len() == 1 => Some(s.as_bytes()[0]),
            Some(s) => {
                return Err(invalid(format!(
                    "skipLineChar `{s}` is not a single character"
                )))
            }
        };
        let reps: Vec<RawRepresentation> = match self.representations {
            // The platform stores representations as a JSON string; exports give an array.
            Value::String(s) => serde_json::from_str(&s)?,
            v @ Value::Array(_) => serde_json::from_value(v)?,
            _ => {
                return Err(invalid(
                    "`representations` is neither an array nor a string".into(),
                ))
            }
        };
        if reps.is_empty() {
            return Err(invalid("no representations".into()));
        }

        // Entities first, relationships after, keeping mapper order within each group.
        let mut ordered: Vec<RawRepresentation> = Vec::with_capacity(reps.len());
        let (entities, relationships): (Vec<_>, Vec<_>) =
            reps.into_iter().partition(|r| r.kind != "relationship");
        ordered.extend(entities);
        ordered.extend(relationships);
        let index_of = |id: &str| ordered.iter().position(|r| r.id == id);
        let entity_count = ordered.iter().filter(|r| r.kind != "relationship").count();

        let mut columns: Vec<ColumnRef> = Vec::new();
        let mut slot_for = |column: ColumnRef| -> usize {
            match columns.iter().position(|c| *c == column) {
                Some(i) => i,
                None => {
                    columns.push(column);
                    columns.len() - 1
                }
            }
        };

        let mut representations = Vec::with_capacity(ordered.len());
        for raw in &ordered {
            for key in raw.extra.keys() {
                tracing::debug!(representation = %raw.id, key = %key, "ignoring unknown representation key");
            }
            let kind = match raw.kind.as_str() {
                "entity" => RepKind::Entity(entity_kind(&raw.id, &raw.target.entity_type)?),
                "relationship" => {
                    let t = raw.target.entity_type.to_ascii_lowercase();
                    if !RELATIONSHIP_TYPES.contains(&t.as_str()) {
                        return Err(MapperError::UnsupportedRelationship {
                            representation: raw.id.clone(),
                            relationship_type: raw.target.entity_type.clone(),
                            supported: RELATIONSHIP_TYPES.join(", "),
                        });
                    }
                    RepKind::Relationship(t)
                }
                other => {
                    return Err(invalid(format!(
                        "representation `{}` has type `{other}`; expected entity or relationship",
                        raw.id
                    )))
                }
            };
            let attr_err = |attribute: &str, reason: String| MapperError::Attribute {
                representation: raw.id.clone(),
                attribute: attribute.to_string(),
                reason,
            };

            let mut attrs = Vec::new();
            for a in raw.attributes.iter().flatten() {
                for key in a.extra.keys() {
                    if key != "ref" {
                        tracing::debug!(representation = %raw.id, attribute = %a.key, key = %key, "ignoring unknown attribute key");
                    }
                }
                let Some(key) = Key::parse(&a.key) else {
                    tracing::debug!(representation = %raw.id, attribute = %a.key, "attribute not mapped by feedstix, ignored");
                    continue;
                };
                let column_name = a.column.as_ref().and_then(|c| c.column_name.as_deref());
                let slot = match column_name.filter(|c| !c.trim().is_empty()) {
                    Some(c) => Some(slot_for(
                        ColumnRef::parse(c).map_err(|e| attr_err(&a.key, e))?,
                    )),
                    None => None,
                };
                let config = a.column.as_ref().and_then(|c| c.configuration.as_ref());
                let split = config
                    .and_then(|c| c.separator.clone())
                    .filter(|s| !s.is_empty());
                let date = match config.and_then(|c| c.pattern_date.as_deref()) {
                    Some(p) if !p.trim().is_empty() => {
                        Some(dates::compile(p).map_err(|e| attr_err(&a.key, e))?)
                    }
                    _ => None,
                };
                let offset =
                    dates::parse_timezone(config.and_then(|c| c.timezone.as_deref()).unwrap_or(""))
                        .map_err(|e| attr_err(&a.key, e))?;
                let defaults: Vec<String> = a
                    .default_values
                    .iter()
                    .flatten()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Bool(b) => Some(b.to_string()),
                        Value::Number(n) => Some(n.to_string()),
                        // The resolved form: {id, name}; the id is what the platform stores.
                        Value::Object(o) => o
                            .get("id")
                            .or_else(|| o.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        _ => None,
                    })
                    .filter(|s| !s.is_empty())
                    .collect();
                let mut based_on = Vec::new();
                for target in a
                    .based_on
                    .as_ref()
                    .and_then(|b| b.representations.as_ref())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    match index_of(target) {
                        Some(i) if i < entity_count => based_on.push(i),
                        Some(_) => {
                            return Err(attr_err(
                                &a.key,
                                format!("based_on `{target}` is a relationship; only entities can be joined"),
                            ))
                        }
                        None => {
                            return Err(attr_err(
                                &a.key,
                                format!("based_on names `{target}`, which is not a representation of this mapper"),
                            ))
                        }
                    }
                }
                if key == Key::CreatedBy && slot.is_none() && based_on.is_empty() {
                    // A default author is a platform id; the feed's provenance sets authors.
                    tracing::debug!(representation = %raw.id, "createdBy default ignored");
                    continue;
                }
                attrs.push(AttrSpec {
                    key,
                    slot,
                    split,
                    date,
                    offset,
                    defaults,
                    based_on,
                });
            }

            if let RepKind::Relationship(_) = &kind {
                // Older exports put the ends on the representation itself.
                for (key, end) in [(Key::From, &raw.from), (Key::To, &raw.to)] {
                    if attrs.iter().any(|a| a.key == key) {
                        continue;
                    }
                    if let Some(i) = end
                        .as_deref()
                        .and_then(index_of)
                        .filter(|i| *i < entity_count)
                    {
                        attrs.push(AttrSpec {
                            key,
                            slot: None,
                            split: None,
                            date: None,
                            offset: FixedOffset::east_opt(0)
                                .ok_or_else(|| invalid("utc".into()))?,
                            defaults: Vec::new(),
                            based_on: vec![i],
                        });
                    }
                }
                for key in [Key::From, Key::To] {
                    let ok = attrs.iter().any(|a| a.key == key && !a.based_on.is_empty());
                    if !ok {
                        let which = if key == Key::From { "from" } else { "to" };
                        return Err(attr_err(
                            which,
                            "a relationship needs `from` and `to` attributes with based_on representations".into(),
                        ));
                    }
                }
            }

            let condition = match &raw.target.column_based {
                Some(cb) => match cb
                    .column_reference
                    .as_deref()
                    .filter(|c| !c.trim().is_empty())
                {
                    Some(c) => {
                        let column =
                            ColumnRef::parse(c).map_err(|e| attr_err("column_based", e))?;
                        let equals = match cb.operator.as_deref().unwrap_or("eq") {
                            "eq" => true,
                            "not_eq" | "neq" => false,
                            other => {
                                return Err(attr_err(
                                    "column_based",
                                    format!("operator `{other}` is not eq or not_eq"),
                                ))
                            }
                        };
                        Some(Condition {
                            slot: slot_for(column),
                            equals,
                            value: cb.value.clone().unwrap_or_default().trim().to_string(),
                        })
                    }
                    None => None,
                },
                None => None,
            };

            let rep = Representation {
                id: raw.id.clone(),
                kind,
                attrs,
                condition,
            };
            check_identifying(&rep).map_err(|reason| attr_err("-", reason))?;
            representations.push(rep);
        }

        Ok(Mapper {
            name,
            has_header: self.has_header.unwrap_or(false),
            separator,
            skip_line_char,
            representations,
            columns,
        })
    }
}

fn entity_kind(representation: &str, entity_type: &str) -> Result<EntityKind, MapperError> {
    ENTITY_TYPES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(entity_type.trim()))
        .map(|(_, kind)| *kind)
        .ok_or_else(|| MapperError::UnsupportedEntity {
            representation: representation.to_string(),
            entity_type: entity_type.to_string(),
            supported: supported_entity_types().join(", "),
        })
}

/// An entity representation must be able to produce the property its id is made of.
fn check_identifying(rep: &Representation) -> Result<(), String> {
    let has = |k: Key| rep.attr(k).is_some();
    let RepKind::Entity(kind) = rep.kind else {
        return Ok(());
    };
    let ok = match kind {
        EntityKind::Indicator => has(Key::Pattern) || has(Key::Name),
        EntityKind::Observable(_) => has(Key::Value),
        EntityKind::File => {
            has(Key::Name) || rep.attrs.iter().any(|a| matches!(a.key, Key::Hash(_)))
        }
        _ => has(Key::Name),
    };
    if ok {
        Ok(())
    } else {
        let needed = match kind {
            EntityKind::Indicator => "`pattern` (or `name` with a main observable type)",
            EntityKind::Observable(_) => "`value`",
            EntityKind::File => "a hash (`MD5`, `SHA-1`, `SHA-256`, `SHA-512`) or `name`",
            _ => "`name`",
        };
        Err(format!("maps no {needed}, so it can never build an object"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BARE: &str = r##"{
      "name": "bare", "has_header": true, "separator": ";", "skipLineChar": "#",
      "representations": [
        {"id": "r1", "type": "entity", "target": {"entity_type": "IPv4-Addr"},
         "attributes": [{"key": "value", "column": {"column_name": "B"}}]}
      ]}"##;

    #[test]
    fn bare_mapper() {
        let m = Mapper::from_json(BARE).unwrap();
        assert_eq!(m.name(), "bare");
        assert_eq!(m.separator, b';');
        assert_eq!(m.skip_line_char, Some(b'#'));
        assert!(m.has_header);
        assert_eq!(m.columns, vec![ColumnRef::Letter(1, "B".into())]);
    }

    #[test]
    fn stored_form_with_string_representations() {
        let reps = r#"[{"id":"r1","type":"entity","target":{"entity_type":"Url"},"attributes":[{"key":"value","column":{"column_name":"A"}}]}]"#;
        let text = serde_json::json!({"name": "stored", "representations": reps}).to_string();
        let m = Mapper::from_json(&text).unwrap();
        assert_eq!(m.representations.len(), 1);
        assert!(!m.has_header);
    }

    #[test]
    fn export_envelope_and_feed_envelope() {
        let export =
            format!(r#"{{"openCTI_version":"6.4.0","type":"csvMapper","configuration":{BARE}}}"#);
        assert_eq!(Mapper::from_json(&export).unwrap().name(), "bare");
        let feed = format!(
            r#"{{"openCTI_version":"6.6.6","type":"csvFeeds","configuration":{{"name":"feed",
            "uri":"https://feed.example.test/x.csv","csv_mapper_type":"inline","csv_mapper":{export}}}}}"#
        );
        assert_eq!(Mapper::from_json(&feed).unwrap().name(), "bare");
    }

    #[test]
    fn letters_and_names() {
        assert_eq!(
            ColumnRef::parse("A").unwrap(),
            ColumnRef::Letter(0, "A".into())
        );
        assert_eq!(
            ColumnRef::parse("Z").unwrap(),
            ColumnRef::Letter(25, "Z".into())
        );
        assert_eq!(
            ColumnRef::parse("AA").unwrap(),
            ColumnRef::Letter(26, "AA".into())
        );
        assert_eq!(
            ColumnRef::parse("AG").unwrap(),
            ColumnRef::Letter(32, "AG".into())
        );
        assert_eq!(
            ColumnRef::parse(" dst_ip | DstIP ").unwrap(),
            ColumnRef::Names(vec!["dst_ip".into(), "dstip".into()])
        );
    }

    #[test]
    fn unsupported_entity_lists_supported_ones() {
        let text = BARE.replace("IPv4-Addr", "Credential");
        let err = Mapper::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("`Credential` is not supported"), "{err}");
        assert!(err.contains("IPv4-Addr, IPv6-Addr"), "{err}");
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(matches!(
            Mapper::from_json("[1]"),
            Err(MapperError::Shape(_))
        ));
        assert!(matches!(
            Mapper::from_json("{\"a\":1}"),
            Err(MapperError::Shape(_))
        ));
        assert!(matches!(Mapper::from_json("{"), Err(MapperError::Json(_))));
        let text = BARE.replace("\";\"", "\";;\"");
        let err = Mapper::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("separator `;;`"), "{err}");
    }

    #[test]
    fn relationship_needs_known_ends() {
        let text = r#"{"representations": [
          {"id": "u", "type": "entity", "target": {"entity_type": "Url"},
           "attributes": [{"key": "value", "column": {"column_name": "A"}}]},
          {"id": "rel", "type": "relationship", "target": {"entity_type": "related-to"},
           "attributes": [{"key": "from", "based_on": {"representations": ["u"]}},
                          {"key": "to", "based_on": {"representations": ["nope"]}}]}]}"#;
        let err = Mapper::from_json(text).unwrap_err().to_string();
        assert!(err.contains("`nope`"), "{err}");
        let text = text.replace("related-to", "eats");
        let err = Mapper::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("relationship type `eats`"), "{err}");
    }

    #[test]
    fn nulls_and_unknown_keys_are_tolerated() {
        let text = r#"{"name": null, "has_header": null, "separator": null, "skipLineChar": null,
          "has_entity_dynamic_mapping": false, "something_new": 1,
          "representations": [{"id": "r", "type": "entity",
            "target": {"entity_type": "Malware", "column_based": null},
            "attributes": [
              {"key": "name", "column": {"column_name": "A", "configuration": null},
               "default_values": null, "based_on": null, "ref": null},
              {"key": "is_family", "column": null, "default_values": [{"id": "true", "name": "true"}]},
              {"key": "objectMarking", "column": null, "default_values": ["marking--x"]}]}]}"#;
        let m = Mapper::from_json(text).unwrap();
        assert_eq!(m.name(), "csv mapper");
        let rep = &m.representations[0];
        assert_eq!(rep.attrs.len(), 2);
        assert_eq!(
            rep.attr(Key::IsFamily).unwrap().defaults,
            vec!["true".to_string()]
        );
    }

    #[test]
    fn entity_without_identifying_attribute_is_refused() {
        let text = BARE.replace("\"value\"", "\"x_opencti_score\"");
        let err = Mapper::from_json(&text).unwrap_err().to_string();
        assert!(err.contains("maps no `value`"), "{err}");
    }
}
