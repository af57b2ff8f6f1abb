//! Password-protected EVN PDFs (issue #11, an option of the operator): the PDF 2.0 standard
//! security handler, revision 6, AES-256 for every string and stream, done by `lopdf` (its
//! `EncryptionVersion::V5`), not by hand.
//!
//! The customer opens the file with their password (the *user* password). The *owner* password,
//! which would lift the permission flags, is random and never stored: nobody, the provider
//! included, can turn a protected EVN into an unprotected one without the customer's password.
//! Printing and copying stay allowed (it is the customer's own record, and screen readers need
//! text extraction).

use std::collections::BTreeMap;
use std::sync::Arc;

use lopdf::encryption::crypt_filters::{Aes256CryptFilter, CryptFilter};
use lopdf::{Document, EncryptionState, EncryptionVersion, Permissions};

use crate::RenderError;

/// Random material for one protected file: the 256-bit file encryption key and the owner
/// password. Passed in so this crate needs no random source and tests can be reproducible.
pub struct ProtectionKeys {
    pub file_key: [u8; 32],
    pub owner_password: String,
}

/// Whether `user_password` can protect a PDF: the security handler's own rules (SASLprep: no
/// control characters, no prohibited code points), checked without a document. The error does
/// not quote the password.
pub fn check_password(user_password: &str) -> Result<(), String> {
    if user_password.is_empty() {
        return Err("empty password".into());
    }
    // The handler rejects what SASLprep prohibits but may accept some control characters;
    // none belongs in a password a customer types.
    if user_password.chars().any(char::is_control) {
        return Err("it contains a control character (a line break?)".into());
    }
    // The security handler's own preparation (lopdf: `stringprep::saslprep`), without its
    // key derivation: a password file of 200,000 lines is checked in moments.
    stringprep::saslprep(user_password)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Encrypts a rendered EVN with `user_password` (AES-256, PDF 2.0 security handler R6).
pub fn protect_pdf(
    pdf: &[u8],
    user_password: &str,
    keys: &ProtectionKeys,
) -> Result<Vec<u8>, RenderError> {
    if user_password.is_empty() {
        return Err(RenderError::Protect("empty password".into()));
    }
    let mut doc =
        Document::load_mem(pdf).map_err(|e| RenderError::Protect(format!("cannot read: {e}")))?;
    let filter: Arc<dyn CryptFilter> = Arc::new(Aes256CryptFilter);
    let version = EncryptionVersion::V5 {
        encrypt_metadata: true,
        crypt_filters: BTreeMap::from([(b"StdCF".to_vec(), filter)]),
        file_encryption_key: &keys.file_key,
        stream_filter: b"StdCF".to_vec(),
        string_filter: b"StdCF".to_vec(),
        owner_password: &keys.owner_password,
        user_password,
        permissions: Permissions::PRINTABLE
            | Permissions::PRINTABLE_IN_HIGH_QUALITY
            | Permissions::COPYABLE
            | Permissions::COPYABLE_FOR_ACCESSIBILITY,
    };
    let state = EncryptionState::try_from(version)
        .map_err(|e| RenderError::Protect(format!("password not usable: {e}")))?;
    doc.encrypt(&state)
        .map_err(|e| RenderError::Protect(e.to_string()))?;
    complete_encrypt_dictionary(&mut doc)?;
    // Revision 6 belongs to PDF 2.0 (ISO 32000-2, 7.6.4); say so in the header.
    doc.version = "2.0".to_owned();
    let mut out = Vec::with_capacity(pdf.len() + 1024);
    doc.save_to(&mut out)
        .map_err(|e| RenderError::Save(e.to_string()))?;
    Ok(out)
}

/// lopdf leaves out the key lengths, which ISO 32000-2 (7.6.3.2, 7.6.5) wants for AESV3 (the
/// encryption dictionary's /Length 256, the crypt filter's /Length 32 and /AuthEvent). qpdf
/// copes without them; poppler (Evince, pdftotext) then derives a 40-bit key and reads garbage.
fn complete_encrypt_dictionary(doc: &mut Document) -> Result<(), RenderError> {
    let missing = || RenderError::Protect("no encryption dictionary after encrypting".into());
    let id = doc
        .trailer
        .get(b"Encrypt")
        .and_then(lopdf::Object::as_reference)
        .map_err(|_| missing())?;
    let dict = doc
        .get_object_mut(id)
        .and_then(lopdf::Object::as_dict_mut)
        .map_err(|_| missing())?;
    dict.set("Length", 256);
    let filter = dict
        .get_mut(b"CF")
        .and_then(lopdf::Object::as_dict_mut)
        .and_then(|cf| cf.get_mut(b"StdCF"))
        .and_then(lopdf::Object::as_dict_mut)
        .map_err(|_| missing())?;
    filter.set("Length", 32);
    filter.set("AuthEvent", lopdf::Object::Name(b"DocOpen".to_vec()));
    Ok(())
}
