//! Crawling: listing targets, classifying files, inferring schemas and partitions, and keeping
//! Tables true to the data (issue: crawlers).

pub mod classify;
pub mod container;
pub mod database;
pub mod delimited;
pub mod grok;
pub mod group;
pub mod infer;
pub mod json;
pub mod listing;
pub mod plan;
pub mod run;
pub mod sniff;
pub mod state;
pub mod text_type;

pub use run::{CONDITION_SCHEMA_DRIFT, CrawlRunError, crawl, render};
