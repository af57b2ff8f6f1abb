//! `provider.toml`: who issues the EVN, printed in every header.

use std::path::Path;

use serde::Deserialize;

use crate::ConfigError;

/// The provider's identity as printed on every EVN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub address: Vec<String>,
    pub contact: Option<String>,
    pub phone: Option<String>,
    pub web: Option<String>,
    pub vat_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    /// Legal name, e.g. "Mango Office GmbH".
    name: String,
    /// Address lines, top to bottom.
    address: Vec<String>,
    /// E-mail or other contact line.
    contact: Option<String>,
    phone: Option<String>,
    web: Option<String>,
    vat_id: Option<String>,
}

impl Provider {
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Provider, ConfigError> {
        let raw: RawProvider = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        if raw.name.trim().is_empty() {
            return Err(ConfigError::new(path, None, "`name` must not be empty"));
        }
        if raw.address.is_empty() {
            return Err(ConfigError::new(
                path,
                None,
                "`address` needs at least one line",
            ));
        }
        Ok(Provider {
            name: raw.name,
            address: raw.address,
            contact: raw.contact,
            phone: raw.phone,
            web: raw.web,
            vat_id: raw.vat_id,
        })
    }
}

pub(crate) fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_owned();
    match e.span() {
        Some(span) => ConfigError::at_offset(path, text, span.start, message),
        None => ConfigError::new(path, None, message),
    }
}
