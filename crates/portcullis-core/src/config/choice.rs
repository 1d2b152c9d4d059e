//! The file's string-typed choices (`[gateway] fail_mode`, `[[targets]] kind`, …): each is an
//! enum whose spellings are written once, in its [`Choice`] impl, and parsed here, once, by
//! [`Problems::choice`]; validation and everything after it match the enum.
//!
//! Not left to serde: an unknown spelling is a problem like any other, named with its field
//! while every other problem is still collected, where a serde error would stop at the first.
//! Must not hold a section's rules, only how each choice is spelled.

use crate::catalog::TargetKind;

use super::gateway::FailMode;
use super::problems::Problems;

/// A value the file names by one of a fixed set of words.
pub trait Choice: Copy + 'static {
    /// Every value, in the order a refusal lists them.
    const ALL: &'static [Self];
    /// How the file spells it.
    fn spelling(self) -> &'static str;
    /// A word on what it means, shown after its spelling when a file names none of them.
    fn hint(self) -> Option<&'static str> {
        None
    }
}

impl Choice for TargetKind {
    const ALL: &'static [Self] = &[TargetKind::Tcp, TargetKind::Ssh];
    fn spelling(self) -> &'static str {
        self.as_str()
    }
    fn hint(self) -> Option<&'static str> {
        match self {
            TargetKind::Tcp => Some("forwarding only"),
            TargetKind::Ssh => None,
        }
    }
}

impl Choice for FailMode {
    const ALL: &'static [Self] = &[FailMode::OpenUntilExpiry, FailMode::Closed];
    fn spelling(self) -> &'static str {
        match self {
            FailMode::OpenUntilExpiry => "open-until-expiry",
            FailMode::Closed => "closed",
        }
    }
}

impl Problems {
    /// `text` as one of `T`'s values, or a problem listing them all.
    pub(super) fn choice<T: Choice>(&mut self, field: &str, text: &str) -> Option<T> {
        if let Some(v) = T::ALL.iter().find(|v| v.spelling() == text) {
            return Some(*v);
        }
        let all = T::ALL
            .iter()
            .map(|v| match v.hint() {
                Some(hint) => format!("{:?} ({hint})", v.spelling()),
                None => format!("{:?}", v.spelling()),
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.push(field, format!("{text:?} is not one of {all}"));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Choice + PartialEq + std::fmt::Debug>() {
        for v in T::ALL {
            let mut p = Problems(Vec::new());
            assert_eq!(p.choice::<T>("f", v.spelling()), Some(*v));
            assert!(p.0.is_empty());
        }
    }

    #[test]
    fn every_value_parses_from_its_spelling() {
        round_trip::<TargetKind>();
        round_trip::<FailMode>();
    }

    #[test]
    fn an_unknown_spelling_names_every_choice() {
        let mut p = Problems(Vec::new());
        assert_eq!(p.choice::<TargetKind>("targets[0] (x).kind", "udp"), None);
        assert_eq!(
            p.0,
            ["targets[0] (x).kind: \"udp\" is not one of \"tcp\" (forwarding only), \"ssh\""]
        );
    }
}
