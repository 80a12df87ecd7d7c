//! Host interfaces offered to components, one file per capability. A plugin reaches
//! only what its connector's configuration grants: the values of the options the
//! plugin declares as grants (a directory, a store URL, ...), nothing else.

mod cassandra;
mod elasticsearch;
pub mod files;
pub mod http;
pub mod log;
mod mongodb;
mod source_status;
mod state;
mod stores;

use std::path::PathBuf;

pub use http::{Egress, EgressPolicy};
pub use source_status::Throttle;
pub use stores::StoreClients;

use crate::config::EgressConfig;
use crate::runtime::OptionType;
use crate::runtime::TaskState;
use crate::runtime::bindings::types::{self, Error};

impl types::Host for TaskState {}

/// What one connector's configuration grants its plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The directory of the `files` capability.
    pub directory: Option<PathBuf>,
    /// Elasticsearch / OpenSearch base URLs.
    pub elasticsearch_urls: Vec<String>,
    /// MongoDB connection strings.
    pub mongodb_uris: Vec<String>,
    /// CQL contact point lists.
    pub cql_contact_points: Vec<String>,
    /// HTTP base URLs.
    pub http_endpoints: Vec<String>,
    /// More hosts for outgoing HTTP, and the limits of every request.
    pub egress: EgressConfig,
}

impl Grants {
    /// Adds the value of one granting option; `resolve` turns a configured directory
    /// into the path the host uses.
    pub fn add(&mut self, option_type: OptionType, value: &str, resolve: impl Fn(&str) -> PathBuf) {
        match option_type {
            OptionType::Directory => self.directory = Some(resolve(value)),
            OptionType::ElasticsearchUrl => self.elasticsearch_urls.push(normalize_url(value)),
            OptionType::MongodbUri => self.mongodb_uris.push(value.to_owned()),
            OptionType::CqlContactPoints => self.cql_contact_points.push(normalize_contact_points(value)),
            OptionType::HttpEndpoint => self.http_endpoints.push(normalize_url(value)),
            _ => {}
        }
    }

    /// Ok when `url` is one of the granted Elasticsearch URLs.
    pub fn check_elasticsearch(&self, url: &str) -> Result<(), Error> {
        let url = normalize_url(url);
        if self.elasticsearch_urls.contains(&url) {
            Ok(())
        } else {
            Err(refused("Elasticsearch URL", &redact_url(&url), "an elasticsearch-url option"))
        }
    }

    /// Ok when `uri` is one of the granted MongoDB connection strings.
    pub fn check_mongodb(&self, uri: &str) -> Result<(), Error> {
        if self.mongodb_uris.iter().any(|granted| granted == uri) {
            Ok(())
        } else {
            Err(refused("MongoDB URI", &redact_url(uri), "a mongodb-uri option"))
        }
    }
}

impl Grants {
    /// Where outgoing HTTP requests may go: the endpoints' hosts and `egress.allowed_hosts`.
    pub fn egress_policy(&self) -> EgressPolicy {
        EgressPolicy::new(&self.http_endpoints, &self.egress)
    }

    /// Ok when `contact_points` are the granted CQL contact points (in any order).
    pub fn check_cassandra(&self, contact_points: &str) -> Result<(), Error> {
        let points = normalize_contact_points(contact_points);
        if self.cql_contact_points.contains(&points) {
            Ok(())
        } else {
            Err(refused("CQL contact points", &points, "a cql-contact-points option"))
        }
    }
}

/// Contact points sorted and trimmed, so the same set written differently matches.
fn normalize_contact_points(points: &str) -> String {
    let mut points: Vec<&str> = points.split(',').map(str::trim).filter(|point| !point.is_empty()).collect();
    points.sort_unstable();
    points.join(",")
}

fn refused(what: &str, shown: &str, option: &str) -> Error {
    Error::BadConfig(format!(
        "the plugin asked for the {what} {shown}, which this connector's configuration does not grant; \
         only the values of its {option} are reachable"
    ))
}

/// A URL without a trailing slash, so `http://es:9200/` and `http://es:9200` match.
fn normalize_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// The URL with any `user:password@` removed, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let redacted = if host.len() == authority.len() { authority.to_owned() } else { format!("***@{host}") };
    if scheme.is_empty() { format!("{redacted}{path}") } else { format!("{scheme}://{redacted}{}", path.split('?').next().unwrap_or("")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_and_query() {
        assert_eq!(redact_url("mongodb://user:secret@db1:27017,db2/app?authSource=admin"), "mongodb://***@db1:27017,db2/app");
        assert_eq!(redact_url("http://es:9200"), "http://es:9200");
        assert_eq!(redact_url("https://elastic:pw@es.example.com/"), "https://***@es.example.com/");
    }

    #[test]
    fn only_granted_endpoints_pass() {
        let mut grants = Grants::default();
        grants.add(OptionType::ElasticsearchUrl, "http://es:9200/", |directory: &str| PathBuf::from(directory));
        assert!(grants.check_elasticsearch("http://es:9200").is_ok());
        let Err(Error::BadConfig(message)) = grants.check_elasticsearch("http://other:9200") else { panic!("granted") };
        assert!(message.contains("http://other:9200"), "{message}");
        assert!(grants.check_mongodb("mongodb://es:9200").is_err());
    }
}
