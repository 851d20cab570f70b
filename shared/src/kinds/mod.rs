//! Feed kinds: each turns one page of its source into STIX objects and a new cursor.

pub mod csv;
pub mod rss;
pub mod taxii;
