//! API tokens (`cairn user add`): a bearer credential that makes a call act as a named
//! user. A token is `cairn_ID_SECRET`: the id (16 hex digits) names it in listings and
//! revocations; the secret (64 hex digits, 256 random bits) is shown once, when the token
//! is made, and only its hash is ever sent to or stored by the metadata service.

use rand::RngCore;

use crate::ids::hex;

/// The text every token starts with (recognisable in a leaked file or a secret scanner).
const PREFIX: &str = "cairn_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// Domain separation for the hash of a token's secret.
const HASH_CONTEXT: &str = "cairn 2026-11 API token secret";

/// Why a text is not an API token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Cairn API token (expected cairn_ID_SECRET as printed by `cairn user add`)")]
pub struct MalformedToken;

/// An API token: its public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    id: String,
    secret: String,
}

impl ApiToken {
    /// A new token with a random id and secret (from the operating system's generator).
    pub fn generate() -> ApiToken {
        let mut id = [0u8; ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut id);
        rand::rngs::OsRng.fill_bytes(&mut secret);
        ApiToken {
            id: hex(&id),
            secret: hex(&secret),
        }
    }

    /// Parses `cairn_ID_SECRET` (surrounding whitespace, as in a token file, is ignored).
    pub fn parse(text: &str) -> Result<ApiToken, MalformedToken> {
        let rest = text.trim().strip_prefix(PREFIX).ok_or(MalformedToken)?;
        let (id, secret) = rest.split_once('_').ok_or(MalformedToken)?;
        if !is_token_id(id) || !is_lower_hex(secret, SECRET_BYTES * 2) {
            return Err(MalformedToken);
        }
        Ok(ApiToken {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The public part: names the token in listings and revocations.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the metadata service stores and compares: a hash of the secret.
    pub fn hash(&self) -> [u8; 32] {
        blake3::derive_key(HASH_CONTEXT, self.secret.as_bytes())
    }

    /// Whether `stored` is this token's hash (in constant time).
    pub fn matches(&self, stored: &[u8; 32]) -> bool {
        blake3::Hash::from(self.hash()) == blake3::Hash::from(*stored)
    }

    /// The whole token, secret included: for showing once and for a token file.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }
}

/// Never prints the secret.
impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}, secret hidden)", self.id)
    }
}

/// Whether `id` has the form of a token id.
pub fn is_token_id(id: &str) -> bool {
    is_lower_hex(id, ID_BYTES * 2)
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_token_parses_back_and_matches_only_its_own_hash() {
        let token = ApiToken::generate();
        let text = token.reveal();
        assert!(text.starts_with("cairn_"), "{text}");
        assert_eq!(text.len(), 6 + 16 + 1 + 64);
        let parsed = ApiToken::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(parsed, token);
        assert!(parsed.matches(&token.hash()));
        let other = ApiToken::generate();
        assert_ne!(other.id(), token.id());
        assert!(!other.matches(&token.hash()));
        // The same id with another secret does not match.
        let forged = ApiToken::parse(&format!("cairn_{}_{}", token.id(), "0".repeat(64))).unwrap();
        assert!(!forged.matches(&token.hash()));
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = ApiToken::generate().reveal();
        for bad in [
            "",
            "cairn_",
            "bearer",
            &good[1..],
            &good[..good.len() - 1],
            &good.replace("cairn_", "cairn-"),
            &good.to_uppercase(),
            &format!("{good}0"),
            &format!("cairn_{}_{}", "g".repeat(16), "0".repeat(64)),
        ] {
            assert_eq!(ApiToken::parse(bad), Err(MalformedToken), "{bad:?}");
        }
    }

    proptest! {
        /// Tokens come from the network (a request header) and from files: any text
        /// parses or is refused, never panics, and what parses prints back the same.
        #[test]
        fn parsing_any_text_never_panics(text in ".{0,120}") {
            if let Ok(token) = ApiToken::parse(&text) {
                prop_assert_eq!(token.reveal(), text.trim());
            }
        }
    }
}
