//! API tokens: which user each token acts as. Replicated with the rest of the namespace;
//! only a hash of each token's secret is kept (see `cairn_common::token`), so neither the
//! Raft log nor a snapshot can give a token away.

use cairn_common::token::ApiToken;
use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::{Namespace, NamespaceError};

/// One token: its user, the hash of its secret and when it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub user: String,
    pub hash: [u8; 32],
    /// Seconds since the Unix epoch (the leader's clock).
    pub created: u64,
}

impl Namespace {
    /// The user `token` acts as; `None` if it is unknown, revoked or forged.
    pub fn token_user(&self, token: &ApiToken) -> Option<String> {
        let record = self.tokens.get(&token.id().to_string())?;
        token.matches(&record.hash).then_some(record.user)
    }

    /// Every token by id.
    pub fn tokens(&self) -> Vec<(String, TokenRecord)> {
        self.tokens.iter().collect()
    }

    pub(super) fn add_token(
        &mut self,
        id: String,
        record: TokenRecord,
    ) -> Result<CommandResult, NamespaceError> {
        match self.tokens.get(&id) {
            // The same token again: a retry whose first reply was lost.
            Some(known) if known.user == record.user && known.hash == record.hash => {
                return Ok(CommandResult::Done)
            }
            Some(_) => return Err(NamespaceError::TokenExists { id }),
            None => {}
        }
        self.tokens.insert(id, record);
        Ok(CommandResult::Done)
    }

    pub(super) fn revoke_token(&mut self, id: &str) -> Result<CommandResult, NamespaceError> {
        match self.tokens.remove(&id.to_string()) {
            Some(_) => Ok(CommandResult::Done),
            None => Err(NamespaceError::NoSuchToken { id: id.into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Command;

    #[test]
    fn a_token_acts_as_its_user_until_revoked_and_ids_are_unique() {
        let mut ns = Namespace::new();
        let token = ApiToken::generate();
        let add = |token: &ApiToken, user: &str| Command::AddToken {
            id: token.id().into(),
            record: TokenRecord {
                user: user.into(),
                hash: token.hash(),
                created: 1,
            },
        };
        assert_eq!(ns.token_user(&token), None);
        assert!(matches!(
            ns.apply_and_write(add(&token, "alice")),
            CommandResult::Done
        ));
        assert_eq!(ns.token_user(&token).as_deref(), Some("alice"));
        // A retried add of the same token succeeds; another user under its id does not.
        assert!(matches!(
            ns.apply_and_write(add(&token, "alice")),
            CommandResult::Done
        ));
        assert!(matches!(
            ns.apply_and_write(add(&token, "mallory")),
            CommandResult::Rejected(NamespaceError::TokenExists { .. })
        ));
        assert_eq!(
            ns.token_user(&token).as_deref(),
            Some("alice"),
            "not replaced"
        );
        let forged = ApiToken::parse(&format!("cairn_{}_{}", token.id(), "0".repeat(64))).unwrap();
        assert_eq!(ns.token_user(&forged), None);
        assert_eq!(ns.tokens().len(), 1);
        let revoke = Command::RevokeToken {
            id: token.id().into(),
        };
        assert!(matches!(
            ns.apply_and_write(revoke.clone()),
            CommandResult::Done
        ));
        assert_eq!(ns.token_user(&token), None);
        assert!(matches!(
            ns.apply_and_write(revoke),
            CommandResult::Rejected(NamespaceError::NoSuchToken { .. })
        ));
    }
}
