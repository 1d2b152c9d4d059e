//! One key, one identity: who holds which public key, over `[[gateways]]` and `[[users]]` (and
//! any later section that registers login keys). Owns the "already registered" problem; must
//! not decide whether a section needs keys at all.

use std::collections::HashMap;

use crate::keys;

use super::problems::Problems;

/// Normalised public key → its holder, as `gateway gw-1` or `user alice`.
#[derive(Default)]
pub(super) struct KeyOwners(HashMap<String, String>);

impl KeyOwners {
    /// `line` parsed and normalised for `owner`, or a problem at `field` if it does not parse
    /// or another identity holds it already (the same owner listing a key twice is harmless).
    pub(super) fn claim(
        &mut self,
        p: &mut Problems,
        field: &str,
        owner: String,
        line: &str,
    ) -> Option<String> {
        match keys::parse_public_key(line) {
            Ok(k) => {
                let norm = keys::normalize(&k);
                match self.0.get(&norm) {
                    Some(prev) if prev != &owner => {
                        p.push(field, format!("key is already registered to {prev}"));
                    }
                    Some(_) => {}
                    None => {
                        self.0.insert(norm.clone(), owner);
                    }
                }
                Some(norm)
            }
            Err(e) => {
                p.push(field, e);
                None
            }
        }
    }
}
