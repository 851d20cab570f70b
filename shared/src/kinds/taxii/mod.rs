//! Placeholder until the TAXII module lands.
#![allow(missing_docs)]

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaxiiCursor {}

impl TaxiiCursor {
    pub fn describe(&self) -> String {
        "start".into()
    }
}
