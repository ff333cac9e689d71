//! Crawling: listing targets, classifying files, inferring schemas and partitions, and keeping
//! Tables true to the data (issue: crawlers).

pub mod classify;
pub mod cluster;
pub mod container;
pub mod delimited;
pub mod grok;
pub mod group;
pub mod infer;
pub mod json;
pub mod listing;
pub mod local;
pub mod plan;
pub mod sniff;
pub mod state;
pub mod text_type;
